"""Fault injection on the real local platform: no landed file lost, none loaded twice.

Five ``fraud-mlops ingest`` processes land at once on a fresh home (two distinct
contents, landed under several names, and repeats), so their first starts race for
Airflow's metadata migration. Each run is SIGKILLed, process group and all, as it
starts one task of the DAG in turn: ``load_raw``, ``transform``, ``snapshot``,
``sync_feature_view``, ``run_training_pipeline``. Then ``watch --once`` drains the
queue (waiting out the redelivery backoff) and every landed file must end loaded
exactly once (one ingest per content hash, raw rows = the distinct files' rows,
each snapshotted and trained) or dead-lettered with a reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from app.backends import Backends
from app.core.config import CONFIG_ENV, RuntimeConfig
from app.local.generate import generate, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLI = str(Path(sys.executable).parent / "fraud-mlops")
KILL_AT = ("load_raw", "transform", "snapshot", "sync_feature_view", "run_training_pipeline")
# Inside the pipeline, not at its first instant: its kfp.local steps are running.
PIPELINE_KILL_DELAY = 3.0
# A guard against a hang, not the target: on an idle 2-core machine the whole test takes
# about 5 minutes (ten DAG runs, two of them training), on a loaded one far longer.
DEADLINE = 1200.0


@dataclass
class Killer:
    """Kills the run that starts the next task of :data:`KILL_AT`, once per task."""

    targets: list[str] = field(default_factory=lambda: list(KILL_AT))
    killed: list[tuple[str, str]] = field(default_factory=list)  # (landed name, task)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, proc: subprocess.Popen[str], name: str, out: list[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            out.append(line)
            started = line.strip().removeprefix("task started: ")
            with self.lock:
                hit = bool(self.targets) and started == self.targets[0]
                if hit:
                    self.targets.pop(0)
            if hit:
                if started == "run_training_pipeline":
                    time.sleep(PIPELINE_KILL_DELAY)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                with self.lock:
                    self.killed.append((name, started))


def _queue(landing: Path, where: str) -> list[dict[str, object]]:
    folder = landing / ".events" / where
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _run_group(cmd: list[str], env: dict[str, str], timeout: float) -> str:
    """Run ``cmd`` in a process group of its own; on timeout the whole group goes."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return out


def _drain(env: dict[str, str], landing: Path, deadline: float) -> list[str]:
    """``watch --once`` until nothing is pending or claimed, sleeping out the backoff."""
    outputs = []
    while _queue(landing, "pending") or _queue(landing, "claimed"):
        left = deadline - time.monotonic()
        assert left > 0, "the queue did not drain"
        outputs.append(_run_group([CLI, "watch", "--once", "--interval", "0"], env, left))
        due = [float(str(e.get("next_delivery") or 0)) for e in _queue(landing, "pending")]
        if due:
            time.sleep(max(0.0, min(due) - time.time()) + 0.1)
    return outputs


def test_faults_kill_at_every_task_and_concurrent_landings_lose_nothing(tmp_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    cfg = RuntimeConfig.local(tmp_path / "home")
    env = {**os.environ, CONFIG_ENV: cfg.to_json()}
    a = write_csv(generate(800, fraud_rate=0.03, seed=21).frame, tmp_path / "a.csv")
    b = write_csv(generate(700, fraud_rate=0.03, seed=22).frame, tmp_path / "b.csv")
    rows = {"a": 800, "b": 700}
    # (file, landed name): distinct contents, one under two names, and repeats.
    landings = [(a, "a.csv"), (b, "b.csv"), (a, "a.csv"), (a, "a-copy.csv"), (b, "b.csv")]

    killer = Killer()
    procs, threads, logs = [], [], []
    for path, name in landings:
        proc = subprocess.Popen(
            [CLI, "ingest", str(path), "--name", name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: the kill takes the run's children too
        )
        out: list[str] = []
        thread = threading.Thread(target=killer.watch, args=(proc, name, out), daemon=True)
        thread.start()
        procs.append(proc)
        threads.append(thread)
        logs.append(out)
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    for thread in threads:
        thread.join(timeout=10)
    first_round = "".join("".join(out) for out in logs)
    assert "db migrate failed" not in first_round, first_round

    landing = Path(Backends(cfg).landing.location)
    drained = _drain(env, landing, deadline)

    done, failed = _queue(landing, "done"), _queue(landing, "failed")
    with duckdb.connect(str(cfg.warehouse.path), read_only=True) as con:  # type: ignore[union-attr]
        per_hash = dict(
            con.execute("SELECT content_hash, COUNT(*) FROM raw.ingests GROUP BY 1").fetchall()
        )
        raw_rows = con.execute("SELECT COUNT(*) FROM raw.transactions").fetchone()
    lineage = Backends(cfg).lineage
    hashes = {"a": _hash(a), "b": _hash(b)}
    loaded_once = [k for k, h in hashes.items() if per_hash.get(h) == 1]
    duplicates = sum(max(0, n - 1) for n in per_hash.values())
    dead = {str(e["content_hash"]) for e in failed}
    lost = [k for k, h in hashes.items() if per_hash.get(h) != 1 and h not in dead]
    figures = {
        "files_landed": len(landings),
        "distinct_contents": len(hashes),
        "events_acked": len(done),
        "events_dead_lettered": len(failed),
        "contents_loaded_once": len(loaded_once),
        "lost": len(lost),
        "duplicates": duplicates,
        "kills": len(killer.killed),
        "killed_at": [task for _, task in killer.killed],
        "watch_rounds": len(drained),
    }
    print("fault-injection figures:", json.dumps(figures))

    assert [task for _, task in killer.killed] == list(KILL_AT), (figures, first_round)
    # Every event is settled: acked, or dead-lettered with its reason.
    assert len(done) + len(failed) == len(landings), (figures, drained)
    assert all((e.get("dead_letter") or {}).get("reason") for e in failed), failed
    assert lost == [] and duplicates == 0, (figures, per_hash)
    assert set(per_hash) == set(hashes.values()) - dead
    assert raw_rows is not None
    assert raw_rows[0] == sum(rows[k] for k in loaded_once)
    for key in loaded_once:
        ingest = lineage.ingest_by_hash(hashes[key])
        assert ingest is not None and ingest.rows == rows[key]
        snapshot = lineage.snapshot_for_ingest(ingest.ingest_id)
        assert snapshot is not None and lineage.training_runs(snapshot.snapshot_id)


def _hash(path: Path) -> str:
    from app.backends.local.folder_landing import file_sha256

    return file_sha256(path)
