"""``fraud-mlops``: the command line for the local platform (and the plan of the GCP one)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.core.config import dumps_pretty, load_config
from app.core.errors import (
    BackendUnavailableError,
    ConflictError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)

# `predict --url` exits as if it had scored in-process: each status's own class's code
# (a 503 is the store or model being down; a misconfigured function also answers 503).
_EXIT_FOR_STATUS = {
    200: 0,
    **{
        cls.http_status: cls.exit_code
        for cls in (InvalidInputError, NotFoundError, ConflictError, BackendUnavailableError)
    },
}


def _cmd_ingest(args: argparse.Namespace) -> int:
    from app.local.ingest import ingest_or_raise

    ingest_or_raise(load_config(), Path(args.path), name=args.name, force=args.force)
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from app.backends import Backends
    from app.local.trigger import DagRunReport, LocalAirflowTrigger

    cfg = load_config()

    def show(report: DagRunReport) -> None:
        detail = f": {report.error}" if report.error else ""
        run = f"DAG run {report.run_id}" if report.run_id else "DAG run"
        print(
            f"{report.object_name}: {run} {report.state}{detail} (event {report.settled})",
            flush=True,
        )

    if not args.once:
        print(f"watching {Backends(cfg).landing.location} (Ctrl-C stops)", flush=True)
    reports = LocalAirflowTrigger(cfg).watch(interval=args.interval, once=args.once, on_report=show)
    return 0 if all(r.ok for r in reports) else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from app.core.config import config_env
    from app.local.server import command, serving_env

    cfg = load_config()
    # The same workers x threads as the bench measured and the stack deploys.
    env = {**os.environ, **config_env(cfg), **serving_env()}
    print(f"serving the prediction function on http://{args.host}:{args.port}", flush=True)
    cmd = command(args.port, args.host)
    os.execve(cmd[0], cmd, env)
    return 0  # pragma: no cover - execve does not return


def _cmd_predict(args: argparse.Namespace) -> int:
    # "-" reads the number from stdin, keeping it out of `ps` and the shell history.
    number = sys.stdin.readline().strip() if args.card_number == "-" else args.card_number
    if args.url:
        import requests

        try:
            resp = requests.post(args.url, json={"card_number": number}, timeout=30)
        except requests.RequestException as exc:
            raise BackendUnavailableError(
                f"{args.url} did not answer: {type(exc).__name__}"
            ) from exc
        print(json.dumps(resp.json(), indent=2))
        return _EXIT_FOR_STATUS.get(resp.status_code, 1)
    from app.backends import Backends
    from app.core.scoring import Scorer

    score = Scorer.from_services(Backends(load_config())).score(number)
    print(json.dumps(score.as_response(), indent=2))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from app.backends import Backends
    from app.core import status
    from app.core.ports import LandingEvents

    services = Backends(load_config())
    events: LandingEvents | None
    try:
        events = services.landing_events
    except BackendUnavailableError:
        events = None  # this home's events are consumed elsewhere (Composer)
    data = status.collect(services, events)
    print(json.dumps(data, indent=2, default=str) if args.json else status.render(data))
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    from app.backends import Backends

    requeued = Backends(load_config()).landing_events.requeue(args.event_id)
    # Re-queued, not yet run: the trigger (`watch`, or `watch --once`) delivers them.
    print(json.dumps({"requeued": requeued}, indent=2))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from app.backends import Backends
    from app.core.status import render_traffic

    print(f"traffic: {render_traffic(Backends(load_config()).endpoint.promote())}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from app.backends import Backends
    from app.core.status import render_traffic

    print(f"traffic: {render_traffic(Backends(load_config()).endpoint.rollback())}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.local.demo import run_demo

    return run_demo(
        rows=args.rows, data=Path(args.data) if args.data else None, fraud_rate=args.fraud_rate
    )


def _cmd_generate(args: argparse.Namespace) -> int:
    from app.local.generate import generate, write_csv

    try:
        data = generate(args.rows, fraud_rate=args.fraud_rate, seed=args.seed)
    except ValueError as exc:
        raise InvalidInputError(str(exc), location="generate") from exc
    write_csv(data.frame, Path(args.out), with_cards=not args.kaggle_format)
    print(f"wrote {len(data.frame):,} rows ({int(data.frame['Class'].sum())} fraud) to {args.out}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from stacks.plan import main as plan_main

    argv = ["--stack", args.stack]
    if args.json:
        argv += ["--json", args.json]
    return plan_main(argv)


def _cmd_compile(args: argparse.Namespace) -> int:
    from app.pipeline.compile import compile_pipeline

    print(compile_pipeline(Path(args.out)))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(dumps_pretty(load_config()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fraud-mlops", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole local flow end to end")
    demo.add_argument("--rows", type=int, default=50_000, help="rows to generate (default 50000)")
    demo.add_argument("--data", help="use this CSV (Kaggle format, with or without card_number)")
    demo.add_argument("--fraud-rate", type=float, default=0.0017)
    demo.set_defaults(func=_cmd_demo)

    ingest = sub.add_parser("ingest", help="land a CSV and wait for the DAG run it triggers")
    ingest.add_argument("path")
    ingest.add_argument("--name", help="object name in the landing zone (default: file name)")
    ingest.add_argument("--force", action="store_true", help="retrain even if already processed")
    ingest.set_defaults(func=_cmd_ingest)

    watch = sub.add_parser(
        "watch", help="run the DAG for every file put into the landing folder (the local trigger)"
    )
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    watch.add_argument("--once", action="store_true", help="one poll, then exit")
    watch.set_defaults(func=_cmd_watch)

    serve = sub.add_parser("serve", help="serve the prediction function")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(func=_cmd_serve)

    predict = sub.add_parser("predict", help="score a card number")
    predict.add_argument("card_number", help="the number, or - to read it from stdin")
    predict.add_argument("--url", help="call a running function instead of scoring in-process")
    predict.set_defaults(func=_cmd_predict)

    status = sub.add_parser(
        "status", help="what is deployed, from which snapshot, with which metrics"
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    retry = sub.add_parser(
        "retry",
        help="re-queue a dead-lettered landing event (all of them without an id); "
        "`watch` then delivers it",
    )
    retry.add_argument("event_id", nargs="?", help="as `status` lists it (default: all)")
    retry.set_defaults(func=_cmd_retry)

    promote = sub.add_parser("promote", help="give the canary all traffic: it becomes champion")
    promote.set_defaults(func=_cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        help="back to the previous version at 100%%: drop the canary, or redeploy the "
        "version the champion replaced",
    )
    rollback.set_defaults(func=_cmd_rollback)

    gen = sub.add_parser("generate", help="write a synthetic Kaggle-shaped CSV")
    gen.add_argument("--rows", type=int, default=50_000)
    gen.add_argument("--fraud-rate", type=float, default=0.0017)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--kaggle-format", action="store_true", help="omit the card_number column")
    gen.add_argument("--out", required=True)
    gen.set_defaults(func=_cmd_generate)

    plan = sub.add_parser("plan", help="the Pulumi program's resources and IAM, offline")
    plan.add_argument("--stack", default="dev")
    plan.add_argument("--json", help="also write the plan as JSON here")
    plan.set_defaults(func=_cmd_plan)

    comp = sub.add_parser("compile-pipeline", help="compile the KFP pipeline to YAML")
    comp.add_argument("out")
    comp.set_defaults(func=_cmd_compile)

    cfg = sub.add_parser("config", help="print the runtime config in force")
    cfg.set_defaults(func=_cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FraudMlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
