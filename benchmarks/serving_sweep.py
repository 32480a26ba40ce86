"""Measure gunicorn shapes (workers x threads) for the function: docs/serving.md's table.

``python -m benchmarks.serving_sweep --home H --card N`` serves the prediction function
(and the constant one) from home ``H`` in each shape, with hey on the same cores:
closed-loop peak, then p50/p99 at fixed open-loop rates. Needs a home with a deployed
model (``make demo`` or a bench home) and a card number it knows.

``--profile DIR`` (needs py-spy: ``pip install py-spy`` in any venv, ``--py-spy PATH``)
then samples each worker under one more closed-loop step: ``--gil`` (the thread holding
the GIL, i.e. where the Python time goes), raw collapsed stacks in
``DIR/<function>-<workers>x<threads>-<pid>.txt``, and prints the top frames.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from app.core.config import RuntimeConfig
from app.local.server import FunctionServer
from benchmarks import http_load

CONSTANT_SOURCE = Path(__file__).resolve().parent / "constant_function.py"
SHAPES = ((1, 1), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (2, 8), (3, 2), (4, 2))


def measure(
    cfg: RuntimeConfig,
    card: str,
    workers: int,
    threads: int,
    *,
    constant: bool,
    seconds: float,
    profile: Path | None = None,
    py_spy: str = "py-spy",
) -> dict[str, object]:
    body = json.dumps({"card_number": card})
    kwargs = {"source": CONSTANT_SOURCE, "target": "constant"} if constant else {}
    server = FunctionServer(cfg, workers=workers, threads=threads, **kwargs)  # type: ignore[arg-type]
    with server as url:
        peak = http_load.closed_loop_peak(url, body, seconds=seconds)
        rates = {
            str(r): http_load.run_hey(url, body, seconds=seconds, target_rps=r).as_dict()
            for r in (500, 1000)
        }
        if profile is not None:
            assert server.pid is not None
            name = f"{'constant' if constant else 'function'}-{workers}x{threads}"
            stacks = profile_workers(server.pid, url, body, seconds, profile / name, py_spy)
            print(f"profile {name}:\n{summarize(stacks)}", file=sys.stderr, flush=True)
    return {
        "workers": workers,
        "threads": threads,
        "constant": constant,
        "peak_rps": peak.achieved_rps,
        "peak_p99_ms": peak.p99_ms,
        **{f"p50_at_{r}": s["p50_ms"] for r, s in rates.items()},
        **{f"p99_at_{r}": s["p99_ms"] for r, s in rates.items()},
        **{f"got_at_{r}": s["achieved_rps"] for r, s in rates.items()},
    }


def profile_workers(
    master: int, url: str, body: str, seconds: float, prefix: Path, py_spy: str
) -> list[Path]:
    """py-spy each worker of ``master`` while hey loads it closed-loop; the raw files."""
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    load = subprocess.Popen(
        ["hey", "-z", f"{seconds + 2}s", "-c", "32", "-m", "POST", "-T", "application/json"]
        + ["-d", body, url],
        stdout=subprocess.DEVNULL,
    )
    outs = [Path(f"{prefix}-{pid}.txt") for pid in workers]
    spies = [
        subprocess.Popen(
            [py_spy, "record", "--gil", "--rate", "200", "--duration", str(int(seconds))]
            + ["--format", "raw", "--output", str(out), "--pid", pid],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid, out in zip(workers, outs, strict=True)
    ]
    for spy in spies:
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode:
            print(f"py-spy failed ({spy.returncode}): {err.strip()[-300:]}", file=sys.stderr)
    load.wait(timeout=seconds + 60)
    return [out for out in outs if out.exists()]


_FRAME = re.compile(r"(?P<name>.*) \((?P<path>.*?)(?::\d+)?\)$")


def _frame(text: str) -> str:
    match = _FRAME.match(text)
    if not match:
        return text
    path = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", match["path"])
    path = re.sub(r".*/(app|benchmarks)/", r"\1/", path)
    return f"{match['name']} ({path})"


def summarize(stacks: list[Path], top: int = 25) -> str:
    """Inclusive and self shares of the samples, per frame, over every worker's file."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for path in stacks:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_frame(f) for f in stack.split(";")]
            total += int(count)
            inclusive.update(dict.fromkeys(set(frames), int(count)))
            own[frames[-1]] += int(count)
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples (GIL held); inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines.append("  self:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--card", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--shapes", default=",".join(f"{w}x{t}" for w, t in SHAPES))
    parser.add_argument("--constant", action="store_true", help="the constant function too")
    parser.add_argument("--profile", type=Path, help="py-spy each worker; raw stacks here")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    args = parser.parse_args(argv)
    if args.profile is not None and not shutil.which(args.py_spy):
        print(f"{args.py_spy} not found (pip install py-spy)", file=sys.stderr)
        return 2
    hey = http_load.ensure_hey()
    if hey is None:
        print("hey is not installed and cannot be (apt-get install hey)", file=sys.stderr)
        return 2
    cfg = RuntimeConfig.local(args.home)
    for shape in args.shapes.split(","):
        w, t = (int(x) for x in shape.split("x"))
        for constant in (False, True) if args.constant else (False,):
            row = measure(
                cfg,
                args.card,
                w,
                t,
                constant=constant,
                seconds=args.seconds,
                profile=args.profile,
                py_spy=args.py_spy,
            )
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
