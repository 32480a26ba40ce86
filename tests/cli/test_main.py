"""``fraud-mlops promote``, ``rollback``, ``status`` and ``retry`` on a real local home
(SQLite, LightGBM, the landing folder's event queue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.backends import Backends
from app.cli.main import main
from app.core.config import CONFIG_ENV, LocalEndpointConfig, RuntimeConfig
from app.core.errors import ConflictError, NotFoundError
from app.core.records import RunFailure


@pytest.fixture
def canary_cfg(cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch) -> RuntimeConfig:
    assert isinstance(cfg.endpoint, LocalEndpointConfig)
    canary = cfg.model_copy(
        update={"endpoint": cfg.endpoint.model_copy(update={"canary_traffic_percent": 20})}
    )
    monkeypatch.setenv(CONFIG_ENV, canary.to_json())
    return canary


def _champion_and_canary(cfg: RuntimeConfig, model_dirs: tuple[Path, Path]) -> None:
    services = Backends(cfg)
    versions = [
        services.registry.register(
            artifact_path=model_dir,
            snapshot_id="snap_0001_x",
            run_name=f"run-{i}",
            threshold=0.5,
            metrics={"auprc": 0.5 + i / 10},
            params={},
        )
        for i, model_dir in enumerate(model_dirs)
    ]
    services.endpoint.deploy(versions[0], expected_champion=None)
    services.endpoint.deploy(versions[1], expected_champion="v0001")


def test_promote_canary_prints_the_new_split_and_exits_0(
    canary_cfg: RuntimeConfig, model_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _champion_and_canary(canary_cfg, model_dirs)

    assert main(["promote"]) == 0

    assert capsys.readouterr().out == "traffic: v0002 100%\n"
    assert Backends(canary_cfg).endpoint.traffic() == {"v0002": 100}


def test_rollback_drops_the_canary_then_has_nothing_left_and_exits_with_conflicts_code(
    canary_cfg: RuntimeConfig, model_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _champion_and_canary(canary_cfg, model_dirs)

    assert main(["rollback"]) == 0
    assert capsys.readouterr().out == "traffic: v0001 100%\n"
    assert main(["rollback"]) == ConflictError.exit_code == 5

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: v0001 was the first version deployed: nothing to roll back to" in captured.err
    assert Backends(canary_cfg).endpoint.traffic() == {"v0001": 100}


def test_promote_nothing_deployed_exits_with_conflicts_code(
    canary_cfg: RuntimeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["promote"]) == 5

    assert capsys.readouterr().err == "error: no canary to promote\n"


def test_status_shows_the_champion_and_the_canary_split(
    canary_cfg: RuntimeConfig, model_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _champion_and_canary(canary_cfg, model_dirs)

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)

    assert "deployed: v0001 (snapshot snap_0001_x" in text
    assert "traffic: v0001 80% (champion), v0002 20% (canary)" in text.splitlines()
    assert data["traffic"] == {"v0001": 80, "v0002": 20}
    assert data["deployed"]["version"] == "v0001"


def test_status_nothing_deployed_says_so(
    canary_cfg: RuntimeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0

    assert "traffic: nothing deployed" in capsys.readouterr().out.splitlines()


def _dead_letter_one(cfg: RuntimeConfig, csv: Path) -> str:
    """A landed file whose run failed for good: its event dead-lettered with its reason."""
    events = Backends(cfg).landing_events
    Backends(cfg).landing.land(csv, name="day1.csv")
    claim = events.pull()
    assert claim is not None
    reason = RunFailure("load_raw", "InvalidInputError", "is not a number", "day1.csv:3:4")
    events.dead_letter(claim, reason=reason)
    return claim.event_id


def test_status_lists_dead_letters_with_their_reasons(
    canary_cfg: RuntimeConfig, small_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event_id = _dead_letter_one(canary_cfg, small_csv)

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)

    assert "dead letters: 1 (`fraud-mlops retry [EVENT_ID]` re-queues)" in text
    assert (
        f"  {event_id}: day1.csv after 1 deliveries, load_raw: "
        "InvalidInputError at day1.csv:3:4: is not a number"
    ) in text.splitlines()
    (letter,) = data["dead_letters"]
    assert letter["event_id"] == event_id and letter["object_name"] == "day1.csv"
    assert letter["reason"] == {
        "task": "load_raw",
        "error_class": "InvalidInputError",
        "message": "is not a number",
        "location": "day1.csv:3:4",
    }


def test_status_no_dead_letters_says_none(
    canary_cfg: RuntimeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0
    assert "dead letters: none" in capsys.readouterr().out.splitlines()


def test_status_dead_letters_not_readable_still_reports_the_rest(
    canary_cfg: RuntimeConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.backends.local.folder_landing import FolderLandingZone
    from app.core.errors import ConfigError

    def denied(self: object) -> list[object]:
        # As the GCP backend translates PermissionDenied on the dead-letter subscription.
        raise ConfigError("pull dead letters: PermissionDenied: 403 pubsub.subscriptions.consume")

    monkeypatch.setattr(FolderLandingZone, "dead_letters", denied)
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)

    assert "traffic: nothing deployed" in lines
    assert (
        "dead letters: not readable here (ConfigError: pull dead letters: PermissionDenied: "
        "403 pubsub.subscriptions.consume)"
    ) in lines
    assert data["dead_letters"] is None
    assert data["dead_letters_error"].startswith("ConfigError: pull dead letters")


def test_retry_with_id_requeues_that_event_and_prints_json(
    canary_cfg: RuntimeConfig, small_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event_id = _dead_letter_one(canary_cfg, small_csv)

    assert main(["retry", event_id]) == 0

    assert json.loads(capsys.readouterr().out) == {"requeued": [event_id]}
    events = Backends(canary_cfg).landing_events
    assert events.dead_letters() == []
    claim = events.pull()
    assert claim is not None and claim.event_id == event_id and claim.delivery_attempt == 1


def test_retry_without_id_requeues_every_dead_letter(
    canary_cfg: RuntimeConfig, small_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retry"]) == 0
    assert json.loads(capsys.readouterr().out) == {"requeued": []}
    event_id = _dead_letter_one(canary_cfg, small_csv)

    assert main(["retry"]) == 0

    assert json.loads(capsys.readouterr().out) == {"requeued": [event_id]}


def test_retry_unknown_id_exits_with_not_founds_code(
    canary_cfg: RuntimeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retry", "20260101T000000000000-deadbeef"]) == NotFoundError.exit_code == 3

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: no dead-lettered landing event '20260101T000000000000-deadbeef'\n"
    )
