"""The `curate` command line: `main` is the console script. Each module registers its commands on the one app
(flows/cli/app.py); none imports another's commands."""
from __future__ import annotations

from curate.flows.cli import classifiers, mix, proxy, run, server  # noqa: F401  (each registers its commands)
from curate.flows.cli.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
