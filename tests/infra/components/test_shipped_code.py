"""Exactly what ships to GCP: the function archive and the Composer upload, file by file.

Both are import closures of their entry points (see components/source_closure.py), so
these lists change only when production code's imports do: a demo helper or a local
backend never reaches them. Before the layered packages they held 45 and 44 files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from components.orchestration import OrchestrationArgs
from components.prediction_function import PredictionFunctionArgs
from components.source_closure import module_closure, package_modules

ROOT = Path(__file__).resolve().parents[3]

CORE_SHARED = [
    "app/__init__.py",
    "app/backends/__init__.py",
    "app/backends/_process.py",
    # The whole GCP backends package ships (lazy_packages): a role's kind picks its module
    # at run time, so none can be left out.
    "app/backends/gcp/__init__.py",
    "app/backends/gcp/bigquery_warehouse.py",
    "app/backends/gcp/calls.py",
    "app/backends/gcp/gcs_landing.py",
    "app/backends/gcp/pubsub_landing_events.py",
    "app/backends/gcp/secret_manager_card_key.py",
    "app/backends/gcp/vertex_endpoint.py",
    "app/backends/gcp/vertex_feature_store.py",
    "app/backends/gcp/vertex_pipeline_runner.py",
    "app/backends/gcp/vertex_registry.py",
    "app/core/__init__.py",
    "app/core/cards.py",
    "app/core/config.py",
    "app/core/errors.py",
    "app/core/model/__init__.py",
    "app/core/model/artifact.py",
    "app/core/model/features.py",
    "app/core/ports.py",
    "app/core/records.py",
    "app/core/schema.py",
    # The warehouse's SQL, read as package data (app/core/sql/__init__.py).
    "app/core/sql/__init__.py",
    "app/core/sql/latest_card_features.sql",
    "app/core/sql/training.sql",
]
FUNCTION_FILES = sorted(
    [
        *CORE_SHARED,
        "app/core/scoring.py",
        "app/function/__init__.py",
        "app/function/main.py",
        "app/function/requirements.txt",
    ]
)
COMPOSER_FILES = sorted(
    [
        *CORE_SHARED,
        "app/core/flow.py",
        "app/core/ingest/__init__.py",
        "app/core/ingest/load.py",
        "app/core/ingest/reader.py",
        "app/dags/__init__.py",
        "app/dags/fraud_training.py",
    ]
)


def _default(cls: type, name: str) -> object:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default


def test_function_archive_holds_exactly_the_function_closure() -> None:
    files = module_closure(
        ROOT,
        _default(PredictionFunctionArgs, "entry_modules"),  # type: ignore[arg-type]
        _default(PredictionFunctionArgs, "lazy_packages"),  # type: ignore[arg-type]
    )
    assert files == FUNCTION_FILES


def test_composer_upload_holds_exactly_the_dags_closure() -> None:
    dag_package = str(_default(OrchestrationArgs, "dag_package"))
    files = module_closure(
        ROOT,
        package_modules(ROOT, dag_package),
        _default(OrchestrationArgs, "lazy_packages"),  # type: ignore[arg-type]
    )
    assert files == COMPOSER_FILES


def test_shipped_code_never_holds_the_laptop_platform_or_local_backends() -> None:
    for path in FUNCTION_FILES + COMPOSER_FILES:
        assert not path.startswith(("app/local/", "app/cli/", "app/backends/local/")), path
        assert not path.startswith(("app/pipeline/", "tests/", "benchmarks/")), path
