"""The bench's writers and parsers, and its HTTP step at toy size (no full bench)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.config import RuntimeConfig
from app.local.server import FunctionServer
from benchmarks import http_load, report, soak
from benchmarks.run import CONSTANT_SOURCE, goals

HEY_CSV = (
    f"{http_load.CSV_HEADER}\n"
    "0.0010,0.0001,0.0000,0.0000,0.0009,0.0000,200,0.0100\n"
    "0.0020,0.0000,0.0000,0.0000,0.0019,0.0000,200,0.5100\n"
    "0.0300,0.0000,0.0000,0.0000,0.0299,0.0000,503,1.0100\n"
)


def test_parse_hey_csv_rows_give_rate_percentiles_and_errors() -> None:
    step = http_load.parse_hey_csv(HEY_CSV, target_rps=2, concurrency=1, seconds=1.0)

    assert step.requests == 3
    assert step.errors == 1
    assert step.statuses == {"200": 2, "503": 1}
    assert step.achieved_rps == 3.0  # three requests sent over one second of offsets
    assert (step.p50_ms, step.p99_ms, step.max_ms) == (2.0, 30.0, 30.0)
    assert not step.held  # a 503 and a p99 over 10 ms


def test_parse_hey_csv_transport_errors_count_and_empty_is_not_held() -> None:
    summary = "Error distribution:\n  [3]\tPost http://x: connection refused\n  [2]\tEOF\n"
    step = http_load.parse_hey_csv(
        http_load.CSV_HEADER,
        target_rps=None,
        concurrency=4,
        seconds=1.0,
        error_lines=http_load._error_count(summary),
    )

    assert (step.requests, step.errors, step.held) == (0, 5, False)


def test_step_held_short_of_rate_is_not_held() -> None:
    fast = http_load.parse_hey_csv(
        "\n".join(HEY_CSV.splitlines()[:3]), target_rps=10, concurrency=1, seconds=1.0
    )

    assert fast.p99_ms < http_load.P99_BOUND_MS and fast.errors == 0
    assert not fast.held  # 4 req/s delivered of 10 asked


def test_report_table_formats_cells_and_escapes_pipes() -> None:
    text = report.table(["a", "b"], [[1234, 1.5], [None, "x|y"], [True, False]])

    assert text.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1,234 | 1.50 |",
        "| — | x\\|y |",
        "| yes | no |",
    ]


def test_report_render_minimal_result_lists_goals_and_missing_parts() -> None:
    result = {
        "rows": 10,
        "data": {
            "duckdb_read_csv_s": 0.5,
            "data_stages_total_s": 4.0,
            "data_stages_ratio_to_duckdb": 8.0,
            "stages": {"load_raw": {"seconds": 2.0, "ratio_to_duckdb": 4.0, "peak_rss_mib": 9}},
        },
        "loader": {"available": False, "reason": "no module"},
        "http": {"available": False, "reason": "hey missing"},
        "correctness": {"ok": False, "failures": ["soak: 1 errors"]},
    }
    result["goals"] = goals(result)

    text = report.render(result)

    assert "**Correctness: FAILED**" in text and "- soak: 1 errors" in text
    assert "| data stages together < 5 s | 4.0 s | met |" in text
    assert "| load_raw | 2.00 | 4.00 | 9 |" in text
    assert "not available: no module" in text and "not available: hey missing" in text


def _sample(phase: str, prob: float, snap: str, as_of: str, version: str = "v1") -> soak.Sample:
    body = {
        "card": "****",
        "fraud_probability": prob,
        "threshold": 0.5,
        "model_version": version,
        "snapshot_id": snap,
        "features_as_of": as_of,
    }
    return soak.Sample(phase, "4000000000000002", 0.0, 1.0, 200, body)


class _Model:
    threshold = 0.5


class _Oracle(soak.Oracle):
    def expected(self, card: str, snapshot_id: str, version: str) -> float:
        return {"s1": 0.25, "s2": 0.75}[snapshot_id]


def test_soak_check_mixed_sync_response_is_reported() -> None:
    oracle = _Oracle(
        key=b"k",
        features={"s1": None, "s2": None},  # type: ignore[dict-item]
        models={"v1": _Model()},  # type: ignore[dict-item]
        synced_at={"s1": "t1", "s2": "t2"},
    )
    good = [_sample("a", 0.25, "s1", "t1"), _sample("b", 0.75, "s2", "t2")]

    assert soak.check(good, oracle)["ok"]
    # s2's snapshot id with s1's features: the probability and the stamp both disagree.
    mixed = soak.check([*good, _sample("b", 0.25, "s2", "t1")], oracle)
    assert not mixed["ok"] and mixed["mixed"] == 2


@pytest.mark.skipif(
    http_load.hey_path() is None, reason="hey is not installed (apt-get install hey)"
)
def test_run_hey_constant_function_tiny_open_loop_step_parses(tmp_path: Path) -> None:
    cfg = RuntimeConfig.local(tmp_path)
    with FunctionServer(
        cfg, source=CONSTANT_SOURCE, target="constant", workers=1, threads=2
    ) as url:
        step = http_load.run_hey(url, json.dumps({"card_number": "x"}), seconds=1, target_rps=40)

    assert step.errors == 0 and step.statuses == {"200": step.requests}
    assert step.requests >= 20
    assert step.concurrency == 4 and step.target_rps == 40


def test_shift_offsets_moves_each_row_and_drops_the_header() -> None:
    text = (
        f"{http_load.CSV_HEADER}\n0.0010,0,0,0,0.001,0,200,0.5000\n0.0020,0,0,0,0.002,0,503,1.25\n"
    )
    shifted = http_load._shift_offsets(text, 0.025).splitlines()
    assert shifted == ["0.0010,0,0,0,0.001,0,200,0.525000", "0.0020,0,0,0,0.002,0,503,1.275000"]
    merged = http_load.parse_hey_csv(
        "\n".join([http_load.CSV_HEADER, *shifted]), target_rps=2, concurrency=1, seconds=1.0
    )
    assert merged.requests == 2 and merged.errors == 1 and merged.seconds == 0.75
