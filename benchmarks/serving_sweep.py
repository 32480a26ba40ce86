"""Measure gunicorn shapes (workers x threads) for the function: docs/serving.md's table.

``python -m benchmarks.serving_sweep --home H --card N`` serves the prediction function
(and the constant one) from home ``H`` in each shape, with hey on the same cores:
closed-loop peak, then p50/p99 at fixed open-loop rates. Needs a home with a deployed
model (``make demo`` or a bench home) and a card number it knows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.core.config import RuntimeConfig
from app.local.server import FunctionServer
from benchmarks import http_load

CONSTANT_SOURCE = Path(__file__).resolve().parent / "constant_function.py"
SHAPES = ((1, 1), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (2, 8), (3, 2), (4, 2))


def measure(
    cfg: RuntimeConfig, card: str, workers: int, threads: int, *, constant: bool, seconds: float
) -> dict[str, object]:
    body = json.dumps({"card_number": card})
    kwargs = {"source": CONSTANT_SOURCE, "target": "constant"} if constant else {}
    with FunctionServer(cfg, workers=workers, threads=threads, **kwargs) as url:  # type: ignore[arg-type]
        peak = http_load.closed_loop_peak(url, body, seconds=seconds)
        rates = {
            str(r): http_load.run_hey(url, body, seconds=seconds, target_rps=r).as_dict()
            for r in (500, 1000)
        }
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--card", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--shapes", default=",".join(f"{w}x{t}" for w, t in SHAPES))
    parser.add_argument("--constant", action="store_true", help="the constant function too")
    args = parser.parse_args(argv)
    hey = http_load.ensure_hey()
    if hey is None:
        print("hey is not installed and cannot be (apt-get install hey)", file=sys.stderr)
        return 2
    cfg = RuntimeConfig.local(args.home)
    for shape in args.shapes.split(","):
        w, t = (int(x) for x in shape.split("x"))
        for constant in (False, True) if args.constant else (False,):
            row = measure(cfg, args.card, w, t, constant=constant, seconds=args.seconds)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
