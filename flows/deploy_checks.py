"""A build step of deploy/prefect.yaml. `prefect deploy` runs it before it creates or changes any deployment, so a
deploy without the variables the deployments are templated with refuses whole, instead of registering some
deployments with empty paths (an empty work root or corpora root would curate into the wrong place)."""
from __future__ import annotations

import os


class DeployEnvironmentError(RuntimeError):
    """A variable deploy/prefect.yaml needs is unset or empty."""


def require_environment(names: list[str]) -> dict[str, str]:
    """Refuse unless every variable in `names` is set and non-empty; returns them (Prefect step outputs)."""
    missing = [n for n in names if not os.environ.get(n, "").strip()]
    if missing:
        raise DeployEnvironmentError(
            f"deploy/prefect.yaml needs {', '.join(missing)} set (nothing was deployed): run `curate server up`, "
            "which sets them, or export them as deploy/README.md shows")
    return {n.lower(): os.environ[n] for n in names}
