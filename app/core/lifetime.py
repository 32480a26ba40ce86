"""Processes that must not outlive the one that started them.

The local platform starts a chain: the trigger, its Airflow child, and the pipeline
steps that child's task starts (through the ``sh -c`` of KFP's lightweight component
command). A trigger killed mid-run has its event handed back and run again, so
anything of the old run still going would race the redelivery: each link dies with
the process that started it. For a direct parent the kernel does it
(``PR_SET_PDEATHSIG``, Linux); through a shell in between, a daemon thread watches the
pid and kills this process, as the kernel would, when it is gone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

# Set by a local runner for the processes it starts: the pid they must die with.
PARENT_PID_ENV = "FRAUD_MLOPS_PARENT_PID"
_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def die_with(pid: int) -> str:
    """Kill this process (SIGKILL) once ``pid`` has died; how: "kernel" or "watch".

    Exits at once when ``pid`` is already gone (it may die before anything watches).
    """
    if os.getppid() == pid and _pdeathsig():
        if os.getppid() != pid:  # died before the request was made
            os._exit(1)
        return "kernel"
    if not alive(pid):
        os._exit(1)
    threading.Thread(target=_watch, args=(pid,), name="die-with", daemon=True).start()
    return "watch"


def die_with_parent_from_env() -> str | None:
    """:func:`die_with` the pid in :data:`PARENT_PID_ENV`; None when it is not set."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return die_with(int(value)) if value.isdigit() else None


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): existence is all there is to know
    return stat.rsplit(") ", 1)[-1][:1] not in ("Z", "X")


def _pdeathsig() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0)
    except (OSError, AttributeError):
        return False


def _watch(pid: int) -> None:
    while alive(pid):
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
