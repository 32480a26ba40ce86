from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app.core.lifetime import PARENT_PID_ENV, alive

# A "step": a body inside reported(), which reads PARENT_PID_ENV, as the KFP steps do.
_STEP = """
import os, time
from app.core.step_report import reported
with reported("train_model"):
    print("ready", os.getpid(), flush=True)
    time.sleep(120)
"""
# A stand-in for the local runner: it starts the step with its own pid in the
# environment, directly or, as KFP runs lightweight components, under an ``sh -c`` that
# stays in between; prints the step's pid, then waits to be killed.
_RUNNER = """
import os, shlex, subprocess, sys
mode, variable, step = sys.argv[1:4]
env = dict(os.environ)
if mode != "unset":
    env[variable] = str(os.getpid())
command = [sys.executable, "-c", step]
if mode == "shell":  # "; true": the shell cannot exec the step in its own place
    command = ["sh", "-c", shlex.join(command) + "; true"]
child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
word, pid = child.stdout.readline().split()
assert word == "ready"
print(pid, flush=True)
child.wait()
"""


def _step_alive_after_runner_killed(mode: str) -> bool:
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, mode, PARENT_PID_ENV, _STEP],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != PARENT_PID_ENV},
    )
    assert runner.stdout is not None
    step = int(runner.stdout.readline())
    runner.send_signal(signal.SIGKILL)  # as a kill -9 of the run
    runner.wait()
    deadline = time.monotonic() + 10
    while alive(step) and time.monotonic() < deadline:
        time.sleep(0.05)
    still = alive(step)
    if still:
        os.kill(step, signal.SIGKILL)
    return still


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_reported_step_with_parent_pid_dies_when_its_runner_is_killed() -> None:
    assert not _step_alive_after_runner_killed("direct")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and sh are Linux's")
def test_reported_step_under_a_shell_dies_when_its_runner_is_killed() -> None:
    assert not _step_alive_after_runner_killed("shell")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and sh are Linux's")
def test_reported_step_without_parent_pid_outlives_its_runner() -> None:
    # The control: without the variable (as on Vertex AI) nothing watches the runner.
    assert _step_alive_after_runner_killed("unset")


def test_die_with_parent_from_env_unset_or_garbage_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.core.lifetime import die_with_parent_from_env

    monkeypatch.delenv(PARENT_PID_ENV, raising=False)
    assert die_with_parent_from_env() is None
    monkeypatch.setenv(PARENT_PID_ENV, json.dumps({"not": "a pid"}))
    assert die_with_parent_from_env() is None


def test_alive_own_pid_yes_reaped_child_no() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert alive(os.getpid())
    assert not alive(child.pid)
