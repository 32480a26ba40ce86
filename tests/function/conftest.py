"""One served function for the whole session: a local home with a deployed model and
synced features, and functions-framework serving it on loopback with its log captured.

Hypothesis budgets: the default run stays around 1,500 requests; set
``HYPOTHESIS_PROFILE=fraud-mlops-soak`` for the >= 10,000-request soak. The profiles are
applied per test (``hostile_settings()``), never loaded globally, so other suites'
hypothesis settings are untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, settings

from app.backends import Backends
from app.core import cards
from app.core.config import RuntimeConfig
from app.core.schema import MODEL_FEATURES
from app.local.server import FunctionServer
from tests.function.http_support import Stats, pans_in

SOAK = "fraud-mlops-soak"
DEFAULT = "fraud-mlops-http"
# (raw-HTTP examples, schemathesis examples per operation): ~1,000 + 4 x ~100 by default.
_BUDGETS = {DEFAULT: (1000, 100), SOAK: (10_000, 1000)}
for _name, (_raw, _) in _BUDGETS.items():
    settings.register_profile(
        _name,
        max_examples=_raw,
        deadline=None,  # a request's latency is not the property under test
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=_name == DEFAULT,  # the default run is the same run every time
        print_blob=True,
    )


def profile_name() -> str:
    return SOAK if os.environ.get("HYPOTHESIS_PROFILE") == SOAK else DEFAULT


def hostile_settings() -> settings:
    return settings.get_profile(profile_name())


def schemathesis_examples() -> int:
    return _BUDGETS[profile_name()][1]


def deploy_first_model(services: Backends, model_dir: Path) -> str:
    """``model_dir`` registered for snapshot ``snap_0001_x`` and deployed over nothing."""
    version = services.registry.register(
        artifact_path=model_dir,
        snapshot_id="snap_0001_x",
        run_name="run-0",
        threshold=0.5,
        metrics={},
        params={},
    )
    services.endpoint.deploy(version, expected_champion=None)
    return version


@dataclass(frozen=True)
class ServedHome:
    cfg: RuntimeConfig
    known_cards: tuple[str, ...]


@dataclass
class RunningFunction:
    url: str
    log_path: Path
    known_cards: tuple[str, ...]
    stats: Stats = field(default_factory=Stats)
    # Every full card number any test sent, to look for in the server's log at the end.
    sent_pans: set[str] = field(default_factory=set)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def remember(self, *parts: bytes) -> None:
        for part in parts:
            self.sent_pans |= pans_in(part)

    def log_bytes(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def pans_in_log(self) -> set[str]:
        """Card numbers sent so far that the server's log holds."""
        return pans_in(self.log_bytes()) & self.sent_pans


@pytest.fixture(scope="session")
def served_home(
    tmp_path_factory: pytest.TempPathFactory, model_dirs: tuple[Path, Path]
) -> ServedHome:
    """Key, synced features for 40 cards, one deployed model: every dependency present."""
    cfg = RuntimeConfig.local(tmp_path_factory.mktemp("function-home") / "home")
    services = Backends(cfg)
    key = services.card_key.key(create=True)
    numbers = tuple(cards.make_card_number(i) for i in range(40))
    rows = [
        {
            "card_id": cards.card_id(n, key),
            "card_masked": cards.mask(n),
            "event_time": 1.0,
            **{f: float(i % 7) for f in MODEL_FEATURES},
        }
        for i, n in enumerate(numbers)
    ]
    services.online_store.sync(pd.DataFrame(rows), snapshot_id="snap_0001_x")
    deploy_first_model(services, model_dirs[0])
    return ServedHome(cfg, numbers)


@pytest.fixture(scope="session")
def function_server(
    served_home: ServedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFunction]:
    """The function under functions-framework (gunicorn), shared by every HTTP test.

    On teardown, the counts go to ``$FRAUD_MLOPS_HTTP_STATS`` when set (the soak report).
    """
    log_path = tmp_path_factory.mktemp("function-log") / "function.log"
    # Each worker imports the stack and loads the model before it is ready: on a loaded
    # 2-core box that can outlast the default wait.
    patience = (
        {"ready_timeout": 180.0}
        if "ready_timeout" in inspect.signature(FunctionServer).parameters
        else {}
    )
    server = FunctionServer(served_home.cfg, log_path=log_path, **patience)
    # At DEBUG the server logs a line per scored request too: the log the PAN check
    # reads then holds everything the function can write about a request. (Only for
    # the server's start, which copies the environment: not for the rest of the session.)
    with contextlib.ExitStack() as stack:
        with mock.patch.dict(os.environ, {"FRAUD_MLOPS_LOG_LEVEL": "DEBUG"}):
            url = stack.enter_context(server)
        health = requests.get(url.rstrip("/") + "/healthz", timeout=30)
        assert health.status_code == 200, f"function not ready: {health.text}"
        running = RunningFunction(url.rstrip("/"), log_path, served_home.known_cards)
        running.remember(*(n.encode() for n in served_home.known_cards))
        yield running
    out = os.environ.get("FRAUD_MLOPS_HTTP_STATS")
    if out:
        report = {
            "profile": profile_name(),
            **running.stats.as_dict(),
            "pans_sent": len(running.sent_pans),
            "pans_in_log": len(running.pans_in_log()),
            "log_bytes": len(running.log_bytes()),
        }
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
