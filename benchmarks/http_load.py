"""HTTP load on loopback with ``hey`` (Debian package): open-loop rates, percentiles.

``hey -q`` paces each of its ``-c`` workers; with many workers each well under its
own rate, a slow response delays only its own worker, so the offered load stays
close to the target (open loop) as long as latency is far below the per-worker
interval (``PER_WORKER_RPS``). Every request's latency comes back from ``-o csv``;
a step whose achieved rate falls short of its target did not hold that rate.

One hey process ticks all its workers in phase: "500 req/s" from one process is 25
requests at the same instant every 50 ms, a burst test whose p99 is the time to clear
the burst. A fixed rate means arrivals spread over time, so an open-loop step runs
its workers in up to :data:`HEY_PROCESSES` hey processes started evenly across one
tick (``spread=False`` keeps the single, bursty process, for comparison).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PER_WORKER_RPS = 20.0
# Processes an open-loop step's workers are spread over (each a few MiB of Go runtime).
HEY_PROCESSES = 16
# A step "holds" its rate when it delivers this share of it with p99 under the bound.
HELD_SHARE = 0.95
P99_BOUND_MS = 10.0
LADDER = (250, 500, 1000, 1500, 2000, 3000, 4000)
FIXED_RATES = (250, 500, 1000, 2000)
CSV_HEADER = (
    "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset"
)


@dataclass(frozen=True)
class Step:
    """One load step as hey saw it."""

    target_rps: float | None  # None: closed loop, as fast as the workers go
    concurrency: int
    seconds: float
    requests: int
    errors: int  # non-2xx plus transport errors
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]

    @property
    def held(self) -> bool:
        return (
            self.errors == 0
            and self.requests > 0
            and self.p99_ms < P99_BOUND_MS
            and (self.target_rps is None or self.achieved_rps >= HELD_SHARE * self.target_rps)
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "held": self.held}


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted samples, nearest rank."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def parse_hey_csv(
    text: str,
    *,
    target_rps: float | None,
    concurrency: int,
    seconds: float,
    error_lines: int = 0,
) -> Step:
    """hey's ``-o csv`` (one row per completed request, times in seconds) -> a Step.

    ``error_lines``: transport errors hey printed on stderr (they have no CSV row).
    """
    latencies: list[float] = []
    offsets: list[float] = []
    statuses: dict[str, int] = {}
    reader = csv.DictReader(io.StringIO(text.strip()))
    for row in reader:
        if not row or row.get("response-time") in (None, ""):
            continue
        latencies.append(float(row["response-time"]) * 1000)
        offsets.append(float(row["offset"]))
        code = row["status-code"]
        statuses[code] = statuses.get(code, 0) + 1
    latencies.sort()
    bad = sum(n for code, n in statuses.items() if not code.startswith("2")) + error_lines
    # The span requests were sent over, not the wall time including hey's start-up.
    span = (max(offsets) - min(offsets)) if len(offsets) > 1 else seconds
    span = max(span, 1e-9)
    return Step(
        target_rps=target_rps,
        concurrency=concurrency,
        seconds=round(span, 3),
        requests=len(latencies),
        errors=bad,
        achieved_rps=round(len(latencies) / span, 1) if latencies else 0.0,
        p50_ms=round(percentile(latencies, 50), 2),
        p90_ms=round(percentile(latencies, 90), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        max_ms=round(latencies[-1], 2) if latencies else float("nan"),
        statuses=statuses,
    )


_ERROR_LINE = re.compile(r"^\s*\[(\d+)\]\s", re.MULTILINE)


def _error_count(summary: str) -> int:
    """hey's stderr summary lists transport errors as ``[count]\tmessage``."""
    if "Error distribution" not in summary:
        return 0
    tail = summary.split("Error distribution", 1)[1]
    return sum(int(n) for n in _ERROR_LINE.findall(tail))


def hey_path() -> str | None:
    return shutil.which("hey")


def ensure_hey() -> str | None:
    """hey, installed from Debian when missing and we may (root); None if it cannot be."""
    found = hey_path()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print("installing hey (apt-get install hey)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "hey"]
    # A stale package list is the usual reason it fails: refresh once, try again.
    for cmd in (install, ["apt-get", "update", "-q"], install):
        subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=300)
        if hey_path():
            break
    return hey_path()


def _hey_command(
    hey: str, url: str, body: str, seconds: float, workers: int, rate: list[str]
) -> list[str]:
    return [
        hey,
        "-z",
        f"{seconds}s",
        "-c",
        str(workers),
        *rate,
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        body,
        "-t",
        "10",
        "-o",
        "csv",
        url,
    ]


def _shift_offsets(text: str, by: float) -> str:
    """hey's CSV with each row's ``offset`` (seconds from its own start) moved by ``by``."""
    lines = text.strip().splitlines()
    if by == 0 or len(lines) < 2:
        return "\n".join(lines[1:])
    out = []
    for line in lines[1:]:
        head, _, offset = line.rpartition(",")
        try:
            out.append(f"{head},{float(offset) + by:.6f}")
        except ValueError:
            continue
    return "\n".join(out)


def run_hey(
    url: str,
    body: str,
    *,
    seconds: float,
    target_rps: float | None = None,
    concurrency: int | None = None,
    hey: str = "hey",
    spread: bool = True,
) -> Step:
    """One step: open loop at ``target_rps``, or closed loop with ``concurrency``."""
    if target_rps is not None:
        workers = concurrency or max(4, math.ceil(target_rps / PER_WORKER_RPS))
        per_worker = target_rps / workers
        rate = ["-q", f"{per_worker:.4f}"]
        processes = min(workers, HEY_PROCESSES) if spread else 1
    else:
        workers = concurrency or 32
        per_worker, rate, processes = 0.0, [], 1
    # Workers split as evenly as they go; process i starts i/processes of a tick late.
    groups = [workers // processes + (i < workers % processes) for i in range(processes)]
    tick = 1.0 / per_worker if per_worker else 0.0
    started: list[tuple[subprocess.Popen[str], float]] = []
    origin = time.monotonic()
    for i, group in enumerate(groups):
        delay = i * tick / processes
        time.sleep(max(0.0, origin + delay - time.monotonic()))
        cmd = _hey_command(hey, url, body, seconds, group, rate)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append((proc, time.monotonic() - origin))
    rows: list[str] = []
    errors = 0
    for proc, at in started:
        stdout, stderr = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 and not stdout.startswith(CSV_HEADER[:13]):
            raise RuntimeError(f"hey failed ({proc.returncode}): {stderr.strip()[:400]}")
        rows.append(_shift_offsets(stdout, at))
        errors += _error_count(stderr)
    return parse_hey_csv(
        "\n".join([CSV_HEADER, *(r for r in rows if r)]),
        target_rps=target_rps,
        concurrency=workers,
        seconds=seconds,
        error_lines=errors,
    )


def rate_ladder(
    url: str,
    body: str,
    *,
    seconds: float,
    rates: Iterable[int] = LADDER,
    always: Iterable[int] = FIXED_RATES,
    hey: str = "hey",
) -> dict[str, Any]:
    """Climb open-loop rates; the highest held one (p99 < 10 ms) is the sustained rate.

    Rates in ``always`` run even past the first failure, for their p50/p99.
    """
    must = set(always)
    steps: list[Step] = []
    failed = False
    for rate in sorted(set(rates) | must):
        if failed and rate not in must:
            continue
        step = run_hey(url, body, seconds=seconds, target_rps=rate, hey=hey)
        print(
            f"  {rate:>5} req/s: got {step.achieved_rps:>7.1f} p50 {step.p50_ms:6.2f} ms "
            f"p99 {step.p99_ms:7.2f} ms errors {step.errors}",
            file=sys.stderr,
            flush=True,
        )
        steps.append(step)
        failed = failed or not step.held
    held = [s.target_rps for s in steps if s.held and s.target_rps is not None]
    # Sustained: the top of the unbroken run of held steps from the bottom.
    sustained = 0.0
    for s in steps:
        if not s.held:
            break
        sustained = float(s.target_rps or 0)
    return {
        "sustained_rps_p99_under_10ms": sustained,
        "held_rates": held,
        "steps": [s.as_dict() for s in steps],
    }


def closed_loop_peak(
    url: str, body: str, *, seconds: float, concurrency: int = 32, hey: str = "hey"
) -> Step:
    return run_hey(url, body, seconds=seconds, concurrency=concurrency, hey=hey)


def steady_p50(samples_ms: Sequence[float]) -> float:
    return round(statistics.median(samples_ms), 3)


def tree_peak_rss_mib(pid: int) -> float:
    """Summed peak RSS (VmHWM) of ``pid`` and its descendants: the server's master and
    workers. Read while they run; shared pages count once per process."""
    total_kib = 0
    for proc in _tree(pid):
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return round(total_kib / 1024, 1)


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out.extend(_tree(int(kid)))
    return out
