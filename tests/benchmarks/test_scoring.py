"""benchmarks.scoring at a tiny size: it runs and reports every figure (speed is not asserted)."""

from __future__ import annotations

from pathlib import Path

from app.core.config import TrainingConfig
from benchmarks.scoring import scoring_bench

SMALL = TrainingConfig(n_estimators=10)


def test_scoring_bench_small_run_reports_fetch_and_score_against_their_floors(
    tmp_path: Path,
) -> None:
    result = scoring_bench(tmp_path / "home", cards=800, samples=100, feast=False, training=SMALL)

    assert result["cards"] == 800
    for part, floor in (
        ("fetch", "sqlite_pk_lookup"),
        ("score", "floor_lookup_plus_booster_predict"),
    ):
        assert result[part]["ratio_p50"] > 0
        assert result[part][floor]["p50_us"] > 0
    assert result["fetch"]["store"]["p99_us"] >= result["fetch"]["store"]["p50_us"]
    assert result["sync_seconds"] > 0
    assert "feast" not in result["fetch"]
