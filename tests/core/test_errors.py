"""One error tree: each class carries its HTTP status and exit code, README says the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core import errors
from app.core.errors import (
    ERROR_CLASSES,
    BackendUnavailableError,
    ConfigError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> list[tuple[str, int, int, bool]]:
    rows = []
    for line in README.read_text().splitlines():
        found = re.match(r"^\| `(\w+Error)` \| (\d{3}) \| (\d+) \| (yes|no) \|", line)
        if found:
            name, status, code, retry = found.groups()
            rows.append((name, int(status), int(code), retry == "yes"))
    return rows


def test_error_table_readme_lists_every_class_with_its_codes() -> None:
    assert _readme_table() == errors.error_table()


def test_error_classes_cover_every_project_error() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    assert subclasses(FraudMlopsError) == set(ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_from_dict_round_trip_keeps_class_message_and_location(cls: type) -> None:
    original = cls("bad cell", location="day1.csv:3:4")

    rebuilt = errors.from_dict(original.to_dict())

    assert type(rebuilt) is cls
    assert (rebuilt.detail, rebuilt.location, str(rebuilt)) == (
        "bad cell",
        "day1.csv:3:4",
        "day1.csv:3:4: bad cell",
    )


def test_from_dict_unknown_class_becomes_the_root_keeping_its_name() -> None:
    rebuilt = errors.from_dict({"error_class": "KeyError", "message": "'x'", "location": None})

    assert type(rebuilt) is FraudMlopsError
    assert str(rebuilt) == "KeyError: 'x'"


def test_codes_caller_faults_are_4xx_and_backend_faults_retry() -> None:
    assert (InvalidInputError.http_status, InvalidInputError.exit_code) == (400, 2)
    assert (NotFoundError.http_status, NotFoundError.exit_code) == (404, 3)
    # A broken config is the operator's to fix (exit 2), never the HTTP caller's (503).
    assert (ConfigError.http_status, ConfigError.exit_code) == (503, 2)
    assert BackendUnavailableError.retryable and not InvalidInputError.retryable
    assert errors.http_status_for(ValueError()) == 500
    assert errors.exit_code_for(ValueError()) == 1
