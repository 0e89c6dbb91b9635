"""Documented commands, as tests/test_documented_commands.py runs them: the documented commands that need neither the demo's work root nor the service. A file of
their own, so that the suite's two processes run them beside the demo's commands."""
import pytest

from tests.test_documented_commands import check_documented_command, runnable, world  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("documented", runnable("other"))
def test_documented_command_runs(documented, world):  # noqa: F811 (the fixture)
    check_documented_command(documented, world)
