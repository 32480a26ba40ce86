from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pulumi_gcp as gcp
import pytest

from components.prediction_function import PredictionFunction, PredictionFunctionArgs
from components.source_closure import module_closure
from stacks.mocks import PROJECT_NUMBER
from tests.infra.conftest import ROOT, assert_component_shape, run_component

FUNCTION = "gcp:cloudfunctionsv2/function:Function"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
CONFIG_JSON = '{"environment": "dev"}'


def _args(source_root: Path, build_dir: Path, **overrides: object) -> PredictionFunctionArgs:
    # Under mocks only: the build account is a resource.
    build_sa = gcp.serviceaccount.Account("build-sa", account_id="fmo-test-build", project="p")
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        function_name="fraud-mlops-test-predict",
        source_bucket_name="fraud-mlops-test-fn-source",
        repository_id="fraud-mlops-test-functions",
        source_root=source_root,
        runtime_config_json=CONFIG_JSON,
        inference_account_email="fmo-test-inference@p.iam.gserviceaccount.com",
        build_account=build_sa,
        min_instances=1,
        max_instances=4,
        memory="512Mi",
        deletion_protection=False,
        invokers=("user:analyst@example.com",),
        build_dir=build_dir,
    )
    base.update(overrides)
    return PredictionFunctionArgs(**base)  # type: ignore[arg-type]


def _build(source_root: Path, build_dir: Path, **overrides: object) -> PredictionFunction:
    return PredictionFunction("prediction", _args(source_root, build_dir, **overrides))


def test_prediction_function_runs_as_inference_account_with_runtime_config(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    assert_component_shape(
        run, "prediction", "fraud-mlops:gcp:PredictionFunction", inputs=("build-sa",)
    )
    (fn,) = run.of_type(FUNCTION)
    service = fn.inputs["serviceConfig"]
    assert service["serviceAccountEmail"] == "fmo-test-inference@p.iam.gserviceaccount.com"
    assert service["environmentVariables"] == {
        "FRAUD_MLOPS_CONFIG": CONFIG_JSON,
        "WORKERS": "2",
        "THREADS": "8",
    }
    assert (service["minInstanceCount"], service["maxInstanceCount"]) == (1, 4)
    build = fn.inputs["buildConfig"]
    assert build["entryPoint"] == "predict" and build["runtime"] == "python311"
    assert (
        build["serviceAccount"]
        == "projects/p/serviceAccounts/fmo-test-build@p.iam.gserviceaccount.com"
    )


def test_prediction_function_source_object_is_content_addressed(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    (obj,) = run.of_type("gcp:storage/bucketObject:BucketObject")
    archive = Path(obj.inputs["source"].path).read_bytes()
    digest = hashlib.sha256(archive).hexdigest()
    assert obj.inputs["name"] == f"function-source/{digest[:20]}.zip"
    (fn,) = run.of_type(FUNCTION)
    assert fn.inputs["buildConfig"]["source"]["storageSource"]["object"] == obj.inputs["name"]


def test_prediction_function_archive_has_entry_shim_and_app_code(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    (obj,) = run.of_type("gcp:storage/bucketObject:BucketObject")
    zf = zipfile.ZipFile(io.BytesIO(Path(obj.inputs["source"].path).read_bytes()))
    assert "from app.function.main import predict" in zf.read("main.py").decode()
    assert {
        "requirements.txt",
        "app/core/config.py",  # imported by the entry module
        "app/core/sql/training.sql",  # data beside a package config.py imports
        "app/function/main.py",
    } <= set(zf.namelist())


def test_prediction_function_archive_leaves_out_what_the_entry_does_not_import(
    source_root: Path, tmp_path: Path
) -> None:
    built: list[PredictionFunction] = []
    run_component(lambda: built.append(_build(source_root, tmp_path)))

    files = built[0].archive.files
    assert not [f for f in files if f.startswith(("app/dags/", "app/local/", "app/cli/"))]
    assert not [f for f in files if f.endswith(".pyc") or "__pycache__" in f]


def test_prediction_function_unresolvable_import_fails_before_any_resource(
    source_root: Path, tmp_path: Path
) -> None:
    (source_root / "app/function/main.py").write_text("from app.core.gone import X\n")

    with pytest.raises(ValueError, match=r"app/function/main\.py:1: from app\.core\.gone"):
        run_component(lambda: _build(source_root, tmp_path))


def test_prediction_function_real_repository_archive_is_import_closure(tmp_path: Path) -> None:
    # The app tree is being reorganised: check the rule, not today's file list.
    built: list[tuple[PredictionFunctionArgs, PredictionFunction]] = []

    def build() -> None:
        args = _args(ROOT, tmp_path)
        built.append((args, PredictionFunction("prediction", args)))

    run = run_component(build)

    ((args, function),) = built
    files = list(function.archive.files)
    assert args.entry_modules == ("app.function.main",)
    assert "app/function/main.py" in files
    closure = module_closure(ROOT, args.entry_modules, args.lazy_packages)
    assert files == sorted([*closure, "main.py", "requirements.txt"])
    assert not [f for f in files if f.startswith(("app/local/", "app/cli/", "tests/"))]
    (obj,) = run.of_type("gcp:storage/bucketObject:BucketObject")
    zf = zipfile.ZipFile(io.BytesIO(Path(obj.inputs["source"].path).read_bytes()))
    assert zf.namelist() == files


def test_prediction_function_invokers_get_run_invoker_on_its_service(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    (grant,) = run.of_type(INVOKER)
    assert grant.inputs["name"] == "fraud-mlops-test-predict"
    assert (grant.inputs["role"], grant.inputs["member"]) == (
        "roles/run.invoker",
        "user:analyst@example.com",
    )


def test_prediction_function_public_flag_adds_all_users(source_root: Path, tmp_path: Path) -> None:
    run = run_component(lambda: _build(source_root, tmp_path, public=True))

    assert {r.inputs["member"] for r in run.of_type(INVOKER)} == {
        "user:analyst@example.com",
        "allUsers",
    }


def test_prediction_function_build_waits_for_build_grants(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    (fn,) = run.of_type(FUNCTION)
    grants = [r for r in run.registrations if r.name.startswith("prediction-build-")]
    assert len(grants) == 4
    assert {g.urn for g in grants} <= set(fn.depends_on)


def test_prediction_function_build_account_gets_run_builder_rights_narrowly(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    member = "serviceAccount:fmo-test-build@p.iam.gserviceaccount.com"
    grants = {
        r.name.removeprefix("prediction-build-"): r
        for r in run.registrations
        if r.name.startswith("prediction-build-")
    }
    assert {g.inputs["member"] for g in grants.values()} == {member}
    # roles/run.builder: storage.objects.get where the build fetches its source. Cloud
    # Functions stages the archive in its own bucket, so the grant is held to that one.
    staged = grants["staged-source-reader"]
    assert staged.type == "gcp:projects/iAMMember:IAMMember"
    assert staged.inputs["role"] == "roles/storage.objectViewer"
    assert staged.inputs["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/'
        f'gcf-v2-sources-{PROJECT_NUMBER}-us-central1")'
    )
    # ... and artifactregistry.repositories.deleteArtifacts, on the function's repository.
    images = grants["image-writer"]
    assert images.type == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
    assert (images.inputs["role"], images.inputs["repository"]) == (
        "roles/artifactregistry.repoAdmin",
        "fraud-mlops-test-functions",
    )
    unconditioned_project = [
        g
        for g in grants.values()
        if g.type == "gcp:projects/iAMMember:IAMMember" and "condition" not in g.inputs
    ]
    assert [g.inputs["role"] for g in unconditioned_project] == ["roles/logging.logWriter"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"invokers": ("allUsers",)}, "invokers"),
        ({"invokers": ("allAuthenticatedUsers",)}, "invokers"),
        ({"invokers": ("alice@example.com",)}, "invokers"),
        ({"min_instances": 5, "max_instances": 2}, "max_instances"),
        ({"function_name": "Predict_Fn"}, "function_name"),
        ({"entry_modules": ()}, "entry_modules"),
        ({"entry_modules": "app.function.main"}, "entry_modules"),
        ({"entry_modules": ("app/function/main",)}, "entry_modules"),
        ({"lazy_packages": ("app.backends-gcp",)}, "lazy_packages"),
        ({"entry_point": "not valid"}, "entry_point"),
    ],
)
def test_prediction_function_args_invalid_value_raises_naming_field(
    source_root: Path, tmp_path: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"PredictionFunctionArgs.{field}"):
        run_component(lambda: _build(source_root, tmp_path, **overrides))


def test_prediction_function_kms_key_encrypts_function_and_repository(
    source_root: Path, tmp_path: Path
) -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: _build(source_root, tmp_path, kms_key_name=key))

    (fn,) = run.of_type(FUNCTION)
    (repo,) = run.of_type("gcp:artifactregistry/repository:Repository")
    assert fn.inputs["kmsKeyName"] == key
    assert repo.inputs["kmsKeyName"] == key


def test_prediction_function_without_key_sets_no_kms_key(source_root: Path, tmp_path: Path) -> None:
    run = run_component(lambda: _build(source_root, tmp_path))

    (fn,) = run.of_type(FUNCTION)
    assert "kmsKeyName" not in fn.inputs


@pytest.mark.parametrize("protect", [True, False])
def test_prediction_function_repository_protect_follows_deletion_protection(
    source_root: Path, tmp_path: Path, protect: bool
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path, deletion_protection=protect))

    (repo,) = run.of_type("gcp:artifactregistry/repository:Repository")
    assert repo.protect is protect


def test_prediction_function_serving_shape_sets_cpu_concurrency_and_env(
    source_root: Path, tmp_path: Path
) -> None:
    run = run_component(lambda: _build(source_root, tmp_path, workers=3, threads=4))

    (fn,) = run.of_type(FUNCTION)
    service = fn.inputs["serviceConfig"]
    assert service["availableCpu"] == "3"
    assert service["maxInstanceRequestConcurrency"] == 12
    assert (
        service["environmentVariables"]["WORKERS"],
        service["environmentVariables"]["THREADS"],
    ) == ("3", "4")


@pytest.mark.parametrize(("workers", "threads"), [(0, 8), (2, 0), (9, 1), (1, 65)])
def test_prediction_function_serving_shape_out_of_range_is_rejected(
    source_root: Path, tmp_path: Path, workers: int, threads: int
) -> None:
    with pytest.raises(ValueError, match="workers/threads"):
        run_component(lambda: _build(source_root, tmp_path, workers=workers, threads=threads))
