"""Child processes that end with the process that started them, however it ends: a SIGKILL runs no cleanup, and a
child left behind (a temporary Prefect server, an extraction child) would live on as an orphan."""
from __future__ import annotations

import ctypes
import os
import signal

try:  # loaded here, not in the child: die_with may run between fork and exec, where no import is safe
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def die_with(parent: int, signum: int = signal.SIGKILL) -> None:
    """In a child: receive `signum` when the thread that started it ends (Linux's PR_SET_PDEATHSIG; nothing elsewhere),
    and end now if `parent` has already ended (0: no parent to check)."""
    try:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signum)
    except AttributeError:  # no libc handle, or no prctl (macOS)
        pass
    if parent and os.getppid() != parent:
        os._exit(0)
