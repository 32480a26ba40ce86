from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.orchestration import (
    CONFIG_OBJECT,
    GCS_MOUNT,
    Orchestration,
    OrchestrationArgs,
    airflow_ignore,
)
from components.source_closure import module_closure, package_modules
from tests.infra.conftest import ROOT, assert_component_shape, run_component

ENV = "gcp:composer/environment:Environment"
OBJECT = "gcp:storage/bucketObject:BucketObject"
CONFIG_JSON = '{"environment": "dev"}'


def _args(source_root: Path, **overrides: object) -> OrchestrationArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        environment_name="fraud-mlops-test",
        image_version="composer-3-airflow-3.1.0",
        environment_size="ENVIRONMENT_SIZE_SMALL",
        service_account_email="fmo-test-orch@p.iam.gserviceaccount.com",
        runtime_config_json=CONFIG_JSON,
        source_root=source_root,
        worker_min_count=1,
        worker_max_count=3,
        private_ip=False,
        deletion_protection=False,
    )
    base.update(overrides)
    return OrchestrationArgs(**base)  # type: ignore[arg-type]


def test_orchestration_composer3_runs_as_orchestration_account(source_root: Path) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    assert_component_shape(run, "orchestration", "fraud-mlops:gcp:Orchestration")
    (env,) = run.of_type(ENV)
    config = env.inputs["config"]
    assert config["softwareConfig"]["imageVersion"] == "composer-3-airflow-3.1.0"
    assert config["nodeConfig"]["serviceAccount"] == "fmo-test-orch@p.iam.gserviceaccount.com"
    assert config["workloadsConfig"]["worker"] == {"minCount": 1, "maxCount": 3}
    assert config["enablePrivateEnvironment"] is False


def test_orchestration_runtime_config_lands_in_bucket_and_env_points_at_it(
    source_root: Path,
) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    (env,) = run.of_type(ENV)
    (config_obj,) = [r for r in run.of_type(OBJECT) if r.inputs["name"] == CONFIG_OBJECT]
    assert config_obj.inputs["content"] == CONFIG_JSON
    assert config_obj.inputs["bucket"].endswith("-bucket")  # the environment's own bucket
    env_vars = env.inputs["config"]["softwareConfig"]["envVariables"]
    assert env_vars == {
        "FRAUD_MLOPS_CONFIG": f"@{GCS_MOUNT}/{CONFIG_OBJECT}",
        "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA": "true",
    }
    assert "pypiPackages" not in env.inputs["config"]["softwareConfig"]


def test_orchestration_watches_the_landing_subscription_and_installs_the_dags_packages(
    source_root: Path,
) -> None:
    subscription = "projects/p/subscriptions/landing"
    args = dataclasses.replace(
        _args(source_root),
        landing_subscription=subscription,
        pypi_packages={"sqlglot": "==30.30.0"},
    )
    run = run_component(lambda: Orchestration("orchestration", args))

    (env,) = run.of_type(ENV)
    software = env.inputs["config"]["softwareConfig"]
    assert software["envVariables"]["FRAUD_MLOPS_LANDING_SUBSCRIPTION"] == subscription
    assert software["pypiPackages"] == {"sqlglot": "==30.30.0"}


def test_composer_packages_are_pinned_as_in_uv_lock() -> None:
    import tomllib

    from stacks.program import COMPOSER_PACKAGES

    root = Path(__file__).resolve().parents[3]
    locked = {
        p["name"]: p["version"] for p in tomllib.loads((root / "uv.lock").read_text())["package"]
    }
    for name, spec in COMPOSER_PACKAGES.items():
        assert spec == f"=={locked[name]}", name


def test_orchestration_uploads_dags_and_what_they_import_without_bytecode(
    source_root: Path,
) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    names = {r.inputs["name"] for r in run.of_type(OBJECT)}
    assert {
        "dags/app/__init__.py",
        "dags/app/core/config.py",  # imported inside a task function
        "dags/app/core/sql/training.sql",  # data beside an imported package
        "dags/app/dags/fraud_training.py",
        "dags/.airflowignore",
    } <= names
    assert not [n for n in names if n.endswith(".pyc")]
    assert not [
        n for n in names if n.startswith(("dags/app/function/", "dags/app/local/", "dags/app/cli/"))
    ]


def test_orchestration_files_are_uploaded_under_dags_keeping_paths(source_root: Path) -> None:
    built: list[Orchestration] = []
    run = run_component(lambda: built.append(Orchestration("orchestration", _args(source_root))))

    (comp,) = built
    uploaded = {r.inputs["name"] for r in run.of_type(OBJECT)} - {
        CONFIG_OBJECT,
        "dags/.airflowignore",
    }
    assert uploaded == {f"dags/{f}" for f in comp.files}
    assert list(comp.files) == sorted(comp.files)


def test_orchestration_airflowignore_names_imported_packages_not_the_dags(
    source_root: Path,
) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    (ignore,) = [r for r in run.of_type(OBJECT) if r.inputs["name"] == "dags/.airflowignore"]
    patterns = [line for line in ignore.inputs["content"].splitlines() if not line.startswith("#")]
    assert patterns == ["app/core/"]


def test_airflow_ignore_dirs_off_the_dag_path_listed_once_at_their_top() -> None:
    files = [
        "app/__init__.py",
        "app/backends/gcp/store.py",
        "app/core/config.py",
        "app/core/sql/training.sql",
        "app/dags/__init__.py",
        "app/dags/fraud_training.py",
        "app/dags/helpers/util.py",
    ]

    lines = airflow_ignore(files, "app.dags").splitlines()

    assert lines[0].startswith("#")
    assert lines[1:] == ["app/backends/", "app/core/", "app/dags/helpers/"]


def test_orchestration_new_dag_file_uploaded_without_config_change(source_root: Path) -> None:
    (source_root / "app/dags/other.py").write_text("def t():\n    import app.core.config\n")

    built: list[Orchestration] = []
    run_component(lambda: built.append(Orchestration("orchestration", _args(source_root))))

    assert "app/dags/other.py" in built[0].files


def test_orchestration_real_repository_uploads_the_dags_import_closure() -> None:
    # The app tree is being reorganised: check the rule, not today's file list.
    args = _args(ROOT)
    built: list[Orchestration] = []
    run = run_component(lambda: built.append(Orchestration("orchestration", args)))

    files = list(built[0].files)
    entries = package_modules(ROOT, args.dag_package)
    assert "app.dags.fraud_training" in entries
    assert "app/dags/fraud_training.py" in files
    assert files == module_closure(ROOT, entries, args.lazy_packages)
    assert not [f for f in files if f.startswith(("app/local/", "app/cli/", "tests/"))]
    uploaded = {r.inputs["name"] for r in run.of_type(OBJECT)}
    assert uploaded == {f"dags/{f}" for f in files} | {CONFIG_OBJECT, "dags/.airflowignore"}


def test_orchestration_private_ip_and_cmek_from_args(source_root: Path) -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(
        lambda: Orchestration(
            "orchestration",
            _args(source_root, private_ip=True, kms_key_name=key, deletion_protection=True),
        )
    )

    (env,) = run.of_type(ENV)
    assert env.inputs["config"]["enablePrivateEnvironment"] is True
    assert env.inputs["config"]["encryptionConfig"] == {"kmsKeyName": key}
    assert env.protect


def test_orchestration_missing_app_tree_uploads_only_config(tmp_path: Path) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(tmp_path)))

    assert {r.inputs["name"] for r in run.of_type(OBJECT)} == {
        CONFIG_OBJECT,
        "dags/.airflowignore",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_version": "composer-2.9.0-airflow-2.9.3"}, "image_version"),
        ({"environment_size": "HUGE"}, "environment_size"),
        ({"worker_min_count": 4, "worker_max_count": 2}, "worker_max_count"),
        ({"environment_name": "Fraud_Env"}, "environment_name"),
        ({"dag_package": "app/dags"}, "dag_package"),
        ({"lazy_packages": "app.backends.gcp"}, "lazy_packages"),
    ],
)
def test_orchestration_args_invalid_value_raises_naming_field(
    source_root: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"OrchestrationArgs.{field}"):
        _args(source_root, **overrides).validate()
