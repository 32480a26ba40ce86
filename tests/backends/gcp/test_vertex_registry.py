"""The Vertex AI model registry at its client boundary (no Vertex emulator exists), with
the artifacts on fake-gcs-server: the exact upload, copy and update requests, idempotent
registration per (snapshot, run), and how versions map back to the project's records."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1
from google.rpc import status_pb2

from app.backends import Backends
from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.vertex_registry import (
    HEALTH_ROUTE,
    PREDICT_ROUTE,
    SERVING_PORT,
    VertexModelRegistry,
    label_value,
)
from app.core.config import CallPolicyConfig, RuntimeConfig, VertexModelRegistryConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.artifact import load_model
from app.core.model.features import feature_row
from app.core.records import ModelVersion
from app.core.schema import MODEL_FEATURES
from tests.support.recording import Call, RecordingClient
from tests.support.synthetic import synthetic_training_frame

if TYPE_CHECKING:
    from tests.support.fake_gcs import FakeGcs

pytest_plugins = ["tests.support.fake_gcs"]

IMAGE = "europe-west1-docker.pkg.dev/fraud-mlops-dev/images/serving@sha256:" + "a" * 64
PARENT = "projects/fraud-mlops-dev/locations/europe-west1"
MODEL = f"{PARENT}/models/fraud-model"
AUTOML = f"{PARENT}/models/987654321"
POLICY = CallPolicy(timeout=30.0, deadline=60.0, initial=0.01, maximum=0.02)
WAIT = 900.0


def _section(bucket: str = "artifacts-bucket") -> VertexModelRegistryConfig:
    return VertexModelRegistryConfig(
        project="fraud-mlops-dev",
        location="europe-west1",
        model_id="fraud-model",
        model_display_name="fraud-mlops-model",
        artifact_root=f"gs://{bucket}/models",
        serving_image=IMAGE,
    )


class FakeModelService:
    """A Model Registry holding one model's versions, answering as Vertex does."""

    def __init__(self, *, exists: bool = False) -> None:
        self.exists = exists
        self.versions: list[aiplatform_v1.Model] = []
        self.lro_timeouts: list[float] = []
        # method -> errors to raise, one per call, before answering normally
        self.failures: dict[str, list[BaseException]] = {}
        self.client = RecordingClient(
            {
                "get_model": self._get_model,
                "list_model_versions": self._list,
                "upload_model": self._upload,
                "copy_model": self._copy,
                "update_model": self._update,
            }
        )

    def _fail(self, method: str) -> None:
        queue = self.failures.get(method)
        if queue:
            raise queue.pop(0)

    def _operation(self, response: Any) -> Any:
        def result(timeout: float) -> Any:
            self.lro_timeouts.append(timeout)
            return response

        return SimpleNamespace(result=result)

    def _version(self, name: str) -> aiplatform_v1.Model:
        _, _, version_id = name.partition("@")
        for model in self.versions:
            if model.version_id == version_id:
                return model
        raise gexc.NotFound(f"{name} not found")

    def _get_model(self, call: Call) -> aiplatform_v1.Model:
        self._fail("get_model")
        name = call.request["name"]
        if "@" in name:
            return self._version(name)
        if not self.exists:
            raise gexc.NotFound(f"{name} not found")
        return aiplatform_v1.Model(name=MODEL)

    def _list(self, call: Call) -> list[aiplatform_v1.Model]:
        self._fail("list_model_versions")
        if not self.exists:
            raise gexc.NotFound(f"{MODEL} not found")
        wanted = dict(re.findall(r'labels\.(\w+)="([^"]*)"', call.request["filter"]))
        return [m for m in self.versions if all(m.labels.get(k) == v for k, v in wanted.items())]

    def _add(self, model: aiplatform_v1.Model, destination: aiplatform_v1.Model | Any) -> str:
        if destination.model_id:
            if self.exists:
                raise gexc.AlreadyExists(f"{MODEL} already exists")
            self.exists = True
        version = aiplatform_v1.Model(model)
        version.name = MODEL
        version.version_id = str(len(self.versions) + 1)
        self.versions.append(version)
        return str(version.version_id)

    def _upload(self, call: Call) -> Any:
        self._fail("upload_model")
        request: aiplatform_v1.UploadModelRequest = call.request
        version_id = self._add(request.model, request)
        return self._operation(
            aiplatform_v1.UploadModelResponse(model=MODEL, model_version_id=version_id)
        )

    def _copy(self, call: Call) -> Any:
        self._fail("copy_model")
        request: aiplatform_v1.CopyModelRequest = call.request
        version_id = self._add(aiplatform_v1.Model(display_name="automl-copy"), request)
        return self._operation(
            aiplatform_v1.CopyModelResponse(model=MODEL, model_version_id=version_id)
        )

    def _update(self, call: Call) -> aiplatform_v1.Model:
        request: aiplatform_v1.UpdateModelRequest = call.request
        version = self._version(request.model.name)
        for path in request.update_mask.paths:
            setattr(version, path, getattr(request.model, path))
        return version


def _registry(
    models: FakeModelService, storage: Any = None, *, bucket: str = "artifacts-bucket"
) -> VertexModelRegistry:
    return VertexModelRegistry(
        _section(bucket),
        policy=POLICY,
        models=models.client,
        storage_client=storage if storage is not None else SimpleNamespace(),
        operation_wait_seconds=WAIT,
    )


def _register(registry: VertexModelRegistry, model_dir: Path, run_name: str = "run-1") -> Any:
    return registry.register(
        artifact_path=model_dir,
        snapshot_id="snap_20240101",
        run_name=run_name,
        threshold=0.42,
        metrics={"auprc": 0.63014, "roc_auc": 0.97},
        params={"num_leaves": 31},
    )


def _described(version_id: str, snapshot_id: str, run_name: str, **extra: Any) -> Any:
    record = {
        "snapshot_id": snapshot_id,
        "run_name": run_name,
        "threshold": 0.5,
        "metrics": {"auprc": 0.6},
        "params": {"framework": "lightgbm"},
        **extra,
    }
    return aiplatform_v1.Model(
        name=MODEL,
        version_id=version_id,
        artifact_uri=f"gs://artifacts-bucket/models/{run_name}/x/",
        labels={
            "app": "fraud-mlops",
            "snapshot_id": label_value(snapshot_id),
            "run_name": label_value(run_name),
        },
        version_description=json.dumps(record),
    )


def _objects(fake_gcs: FakeGcs, bucket: str) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in fake_gcs.client.list_blobs(bucket)}


# -- register: against fake-gcs-server for the artifact --------------------------------


@pytest.mark.emulators
def test_register_first_version_uploads_artifact_then_creates_the_model(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    models = FakeModelService(exists=False)

    version = _register(_registry(models, fake_gcs.client, bucket=bucket), model_dirs[0])

    upload = next(c for c in models.client.calls if c.method == "upload_model").request
    assert isinstance(upload, aiplatform_v1.UploadModelRequest)
    assert (upload.parent, upload.model_id, upload.parent_model) == (PARENT, "fraud-model", "")
    model = upload.model
    assert model.display_name == "fraud-mlops-model"
    assert re.fullmatch(rf"gs://{bucket}/models/run-1/[0-9a-f]{{16}}/", model.artifact_uri)
    assert model.container_spec.image_uri == IMAGE
    assert model.container_spec.predict_route == PREDICT_ROUTE == "/predict"
    assert model.container_spec.health_route == HEALTH_ROUTE == "/health"
    assert [p.container_port for p in model.container_spec.ports] == [SERVING_PORT] == [8080]
    assert dict(model.labels) == {
        "app": "fraud-mlops",
        "snapshot_id": "snap_20240101",
        "run_name": "run-1",
        "trainer": "custom",
        "auprc": "0_6301",
        "roc_auc": "0_9700",
    }
    assert list(model.version_aliases) == []
    assert json.loads(model.version_description) == {
        "snapshot_id": "snap_20240101",
        "run_name": "run-1",
        "threshold": 0.42,
        "metrics": {"auprc": 0.63014, "roc_auc": 0.97},
        "params": {"framework": "lightgbm", "num_leaves": 31},
    }
    prefix = model.artifact_uri.removeprefix(f"gs://{bucket}/")
    local = {p.name: p.read_bytes() for p in model_dirs[0].iterdir() if p.is_file()}
    assert _objects(fake_gcs, bucket) == {f"{prefix}{n}": b for n, b in local.items()}
    assert version == ModelVersion(
        version="v0001",
        snapshot_id="snap_20240101",
        artifact_uri=model.artifact_uri,
        threshold=0.42,
        metrics={"auprc": 0.63014, "roc_auc": 0.97},
        params={"framework": "lightgbm", "num_leaves": 31},
        run_name="run-1",
    )
    assert models.lro_timeouts == [WAIT]
    assert all(c.kwargs["timeout"] == 30.0 and c.kwargs["retry"] for c in models.client.calls)


@pytest.mark.emulators
def test_register_next_version_uploads_with_parent_model(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    models = FakeModelService(exists=False)
    registry = _registry(models, fake_gcs.client, bucket=bucket)
    _register(registry, model_dirs[0], "run-1")

    second = _register(registry, model_dirs[1], "run-2")

    uploads = [c.request for c in models.client.calls if c.method == "upload_model"]
    assert [(u.model_id, u.parent_model) for u in uploads] == [
        ("fraud-model", ""),
        ("", MODEL),
    ]
    assert second.version == "v0002" and second.run_name == "run-2"
    assert [v.version for v in registry.list_versions()] == ["v0001", "v0002"]


@pytest.mark.emulators
def test_register_same_run_twice_makes_no_second_upload(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    models = FakeModelService(exists=False)
    registry = _registry(models, fake_gcs.client, bucket=bucket)
    first = _register(registry, model_dirs[0])
    objects = _objects(fake_gcs, bucket)
    models.client.calls.clear()

    again = _register(registry, model_dirs[0])

    assert again == first
    assert models.client.methods() == ["list_model_versions"]
    assert _objects(fake_gcs, bucket) == objects


@pytest.mark.emulators
def test_register_retried_after_a_failed_upload_reuses_the_artifact_objects(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=True)
    models = FakeModelService(exists=True)
    models.failures["upload_model"] = [gexc.PermissionDenied("vertex cannot read the bucket")]
    registry = _registry(models, fake_gcs.client, bucket=bucket)
    with pytest.raises(ConfigError, match="cannot read the bucket"):
        _register(registry, model_dirs[0])
    generations = {b.name: b.generation for b in fake_gcs.client.list_blobs(bucket)}

    version = _register(registry, model_dirs[0])

    # Create-only uploads met the same bytes: no second generation of any object.
    assert {b.name: b.generation for b in fake_gcs.client.list_blobs(bucket)} == generations
    assert version.version == "v0001"
    assert version.artifact_uri.removeprefix(f"gs://{bucket}/") in {
        name.rsplit("/", 1)[0] + "/" for name in generations
    }


@pytest.mark.emulators
def test_register_first_versions_race_already_exists_retries_as_parent_model(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    models = FakeModelService(exists=False)
    # Another run's first version made the model between this one's check and upload.
    models.failures["upload_model"] = [gexc.AlreadyExists(f"{MODEL} already exists")]

    version = _register(_registry(models, fake_gcs.client, bucket=bucket), model_dirs[0])

    uploads = [c.request for c in models.client.calls if c.method == "upload_model"]
    assert [(u.model_id, u.parent_model) for u in uploads] == [
        ("fraud-model", ""),
        ("", MODEL),
    ]
    assert version.version == "v0001"


@pytest.mark.emulators
def test_register_runs_whose_labels_collide_get_versions_of_their_own(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    registry = _registry(FakeModelService(exists=True), fake_gcs.client, bucket=bucket)
    long = "run-" + "x" * 70
    assert label_value(long + "A") == label_value(long + "B")

    first = _register(registry, model_dirs[0], long + "A")
    second = _register(registry, model_dirs[0], long + "B")

    assert (first.version, first.run_name) == ("v0001", long + "A")
    assert (second.version, second.run_name) == ("v0002", long + "B")


def test_register_without_a_run_name_raises_invalid_input(model_dirs: tuple[Path, Path]) -> None:
    models = FakeModelService(exists=True)

    with pytest.raises(InvalidInputError, match="must name its run"):
        _register(_registry(models), model_dirs[0], run_name="")

    assert models.client.calls == []


# -- adopt -------------------------------------------------------------------------------


def _adopt(registry: VertexModelRegistry, run_name: str = "run-automl") -> ModelVersion:
    return registry.adopt(
        model_resource=AUTOML,
        snapshot_id="snap_20240101",
        run_name=run_name,
        threshold=0.3,
        metrics={"auprc": 0.7},
        params={"budget_milli_node_hours": 1000},
    )


def test_adopt_copies_the_model_as_a_version_then_labels_and_describes_it() -> None:
    models = FakeModelService(exists=True)
    models.versions.append(_described("1", "snap_old", "run-0"))

    version = _adopt(_registry(models))

    copy = next(c for c in models.client.calls if c.method == "copy_model").request
    assert isinstance(copy, aiplatform_v1.CopyModelRequest)
    assert (copy.parent, copy.source_model, copy.parent_model, copy.model_id) == (
        PARENT,
        AUTOML,
        MODEL,
        "",
    )
    update = next(c for c in models.client.calls if c.method == "update_model").request
    assert isinstance(update, aiplatform_v1.UpdateModelRequest)
    assert update.model.name == f"{MODEL}@2"
    assert list(update.update_mask.paths) == ["labels", "version_description"]
    assert dict(update.model.labels) == {
        "app": "fraud-mlops",
        "snapshot_id": "snap_20240101",
        "run_name": "run-automl",
        "trainer": "automl",
        "auprc": "0_7000",
    }
    assert json.loads(update.model.version_description)["params"] == {
        "framework": "automl",
        "budget_milli_node_hours": 1000,
    }
    assert (version.version, version.threshold, version.params["framework"]) == (
        "v0002",
        0.3,
        "automl",
    )
    assert version.artifact_uri == f"{MODEL}@2"  # the copy has no artifact of its own
    assert models.lro_timeouts == [WAIT]


def test_adopt_first_version_copies_with_model_id() -> None:
    models = FakeModelService(exists=False)

    version = _adopt(_registry(models))

    copy = next(c for c in models.client.calls if c.method == "copy_model").request
    assert (copy.model_id, copy.parent_model) == ("fraud-model", "")
    assert version.version == "v0001"


def test_adopt_same_run_twice_makes_no_second_copy() -> None:
    models = FakeModelService(exists=False)
    registry = _registry(models)
    first = _adopt(registry)
    models.client.calls.clear()

    assert _adopt(registry) == first
    assert models.client.methods() == ["list_model_versions"]


def test_adopt_not_a_model_resource_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="model_resource"):
        _registry(FakeModelService()).adopt(
            model_resource="gs://bucket/model",
            snapshot_id="s",
            run_name="r",
            threshold=0.5,
            metrics={},
            params={},
        )


# -- reading -----------------------------------------------------------------------------


def test_get_version_reads_model_at_its_version_id() -> None:
    models = FakeModelService(exists=True)
    models.versions += [_described("1", "snap_a", "run-1"), _described("2", "snap_b", "run-2")]

    version = _registry(models).get("v0002")

    assert models.client.calls[0].request == {"name": f"{MODEL}@2"}
    assert (version.version, version.snapshot_id, version.run_name) == ("v0002", "snap_b", "run-2")


def test_get_unknown_version_raises_not_found() -> None:
    models = FakeModelService(exists=True)
    registry = _registry(models)

    with pytest.raises(NotFoundError, match="'v0007' is not registered"):
        registry.get("v0007")
    with pytest.raises(NotFoundError, match="not registered"):
        registry.get("latest")


def test_get_transient_unavailable_is_retried_within_the_deadline() -> None:
    models = FakeModelService(exists=True)
    models.versions.append(_described("1", "snap_a", "run-1"))
    models.failures["get_model"] = [gexc.ServiceUnavailable("blip"), gexc.ServiceUnavailable("b")]

    assert _registry(models).get("v0001").version == "v0001"
    assert models.client.methods() == ["get_model"] * 3


def test_get_outage_beyond_the_deadline_raises_backend_unavailable() -> None:
    models = FakeModelService(exists=True)
    models.client.answers["get_model"] = gexc.ServiceUnavailable("down")
    registry = VertexModelRegistry(
        _section(),
        policy=CallPolicy(timeout=0.05, deadline=0.1, initial=0.01, maximum=0.02),
        models=models.client,
    )

    with pytest.raises(BackendUnavailableError, match="gave up within the retry deadline"):
        registry.get("v0001")
    assert len(models.client.calls) > 1


def test_list_versions_orders_by_version_id_and_skips_versions_not_described() -> None:
    models = FakeModelService(exists=True)
    stray = aiplatform_v1.Model(name=MODEL, version_id="3", labels={"app": "fraud-mlops"})
    models.versions += [
        _described("10", "snap_a", "run-10"),
        _described("2", "snap_a", "run-2"),
        stray,
    ]

    versions = _registry(models).list_versions()

    assert [v.version for v in versions] == ["v0002", "v0010"]
    assert models.client.calls[0].request == {"name": MODEL, "filter": 'labels.app="fraud-mlops"'}


def test_list_versions_before_the_model_exists_is_empty() -> None:
    assert _registry(FakeModelService(exists=False)).list_versions() == []


def test_versions_for_snapshot_keeps_only_that_exact_snapshot() -> None:
    models = FakeModelService(exists=True)
    models.versions += [
        _described("1", "Snap_A", "run-1"),  # labelled snap_a too
        _described("2", "snap_a", "run-2"),
        _described("3", "snap_b", "run-3"),
    ]

    versions = _registry(models).versions_for_snapshot("snap_a")

    assert [v.version for v in versions] == ["v0002"]
    assert models.client.calls[0].request["filter"] == 'labels.snapshot_id="snap_a"'


def test_is_newer_compares_version_ids_numerically() -> None:
    registry = _registry(FakeModelService())
    v9, v10 = (ModelVersion(f"v{n:04d}", "s", "", 0.5, {}) for n in (9, 10))

    assert registry.is_newer(v10, v9) and not registry.is_newer(v9, v10)
    with pytest.raises(NotFoundError):
        registry.is_newer(ModelVersion("champion", "s", "", 0.5, {}), v9)


# -- load --------------------------------------------------------------------------------


@pytest.mark.emulators
def test_load_downloads_the_artifact_and_loads_the_model(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    registry = _registry(FakeModelService(), fake_gcs.client, bucket=bucket)
    version = _register(registry, model_dirs[1])
    row = feature_row({name: 0.5 for name in MODEL_FEATURES})

    model = registry.load(version)

    assert model.predict(row)[0] == pytest.approx(load_model(model_dirs[1]).predict(row)[0])


@pytest.mark.emulators
def test_load_artifact_gone_raises_backend_unavailable(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    registry = _registry(FakeModelService(), fake_gcs.client, bucket=bucket)
    gone = ModelVersion("v0001", "s", f"gs://{bucket}/models/run-1/abc/", 0.5, {})

    with pytest.raises(BackendUnavailableError, match="v0001 .* cannot be loaded"):
        registry.load(gone)


def test_load_automl_version_raises_config_error() -> None:
    automl = ModelVersion("v0002", "s", f"{MODEL}@2", 0.5, {}, params={"framework": "automl"})

    with pytest.raises(ConfigError, match="AutoML model: Vertex AI scores it"):
        _registry(FakeModelService()).load(automl)


# -- score -----------------------------------------------------------------------------

JOB = f"{PARENT}/batchPredictionJobs/4242"
RUNNING, SUCCEEDED, FAILED = "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"
AUTOML_V2 = ModelVersion("v0002", "snap", f"{MODEL}@2", 0.3, {}, params={"framework": "automl"})


def _fraud_probability(amount: float) -> float:
    """The fake AutoML model: a score that follows each row's own amount."""
    return 1.0 / (1.0 + math.exp(-amount / 50.0))


class FakeJobService:
    """Vertex AI batch prediction as ``score`` meets it: a job that moves through
    ``states`` (one per read, the last repeating); on success its output is written to
    fake-gcs-server by ``write``, in AutoML tabular's JSONL shape."""

    def __init__(
        self,
        gcs: Any = None,
        *,
        states: Sequence[str] = (RUNNING, SUCCEEDED),
        error: str = "",
        write: Callable[[FakeJobService], None] | None = None,
    ) -> None:
        self.gcs = gcs
        self.states = list(states)
        self.error = error
        self.write = write or (lambda jobs: jobs.predict())
        self.written = False
        self.output_directory = ""
        # method -> errors to raise, one per call, before answering normally
        self.failures: dict[str, list[BaseException]] = {}
        self.client = RecordingClient(
            {
                "create_batch_prediction_job": self._create,
                "get_batch_prediction_job": self._get,
                "cancel_batch_prediction_job": lambda call: None,
            }
        )

    def _fail(self, method: str) -> None:
        queue = self.failures.get(method)
        if queue:
            raise queue.pop(0)

    def _create(self, call: Call) -> aiplatform_v1.BatchPredictionJob:
        self._fail("create_batch_prediction_job")
        job = call.request.batch_prediction_job
        prefix = job.output_config.gcs_destination.output_uri_prefix
        # Vertex AI writes into a folder of its own under the prefix.
        self.output_directory = f"{prefix}/prediction-fraud-mlops-model-2024_01_01T00_00_00_000Z"
        return aiplatform_v1.BatchPredictionJob(
            name=JOB, state=aiplatform_v1.JobState.JOB_STATE_PENDING
        )

    def _get(self, call: Call) -> aiplatform_v1.BatchPredictionJob:
        self._fail("get_batch_prediction_job")
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        job = aiplatform_v1.BatchPredictionJob(
            name=JOB, state=getattr(aiplatform_v1.JobState, state)
        )
        if state == SUCCEEDED:
            if not self.written:
                self.write(self)
                self.written = True
            job.output_info = aiplatform_v1.BatchPredictionJob.OutputInfo(
                gcs_output_directory=self.output_directory
            )
        if state == FAILED:
            job.error = status_pb2.Status(code=3, message=self.error)
        return job

    def input_uri(self) -> str:
        create = next(c for c in self.client.calls if c.method == "create_batch_prediction_job")
        (uri,) = create.request.batch_prediction_job.input_config.gcs_source.uris
        return str(uri)

    def _blob(self, uri: str) -> Any:
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        return self.gcs.bucket(bucket).blob(name)

    def input_bytes(self) -> bytes:
        return bytes(self._blob(self.input_uri()).download_as_bytes())

    def input_rows(self) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(self.input_bytes()))

    def put(self, name: str, lines: Sequence[dict[str, Any] | str]) -> None:
        text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
        self._blob(f"{self.output_directory}/{name}").upload_from_string(text)

    def predict(self, *, drop: Sequence[int] = (), keyed: bool = False) -> None:
        """Score each input row as AutoML would: a CSV instance echoed as strings."""
        lines: list[dict[str, Any]] = []
        for row in self.input_rows().to_dict("records"):
            if row["row_id"] in drop:
                continue
            p = _fraud_probability(float(row["amount"]))
            prediction = {"classes": ["0", "1"], "scores": [1.0 - p, p]}
            if keyed:
                lines.append({"key": int(row["row_id"]), "prediction": prediction})
            else:
                instance = {k: "" if pd.isna(v) else str(v) for k, v in row.items()}
                lines.append({"instance": instance, "prediction": prediction})
        lines.reverse()  # Vertex AI keeps no order, and splits its output over files
        half = len(lines) // 2
        self.put("predictions_00001.jsonl", lines[:half])
        self.put("predictions_00002.jsonl", lines[half:])
        self.put("errors_00001.jsonl", [])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _scoring_registry(
    fake_gcs: FakeGcs | None,
    jobs: FakeJobService,
    clock: FakeClock,
    *,
    bucket: str = "artifacts-bucket",
    models: FakeModelService | None = None,
    wait: float = 3600.0,
) -> VertexModelRegistry:
    return VertexModelRegistry(
        _section(bucket),
        policy=POLICY,
        models=(models or FakeModelService()).client,
        storage_client=fake_gcs.client if fake_gcs is not None else SimpleNamespace(),
        jobs=jobs.client,
        operation_wait_seconds=WAIT,
        batch_wait_seconds=wait,
        sleep=clock.sleep,
        clock=clock,
    )


def _holdout(rows: int = 5) -> pd.DataFrame:
    frame = synthetic_training_frame(rows, seed=5)
    frame.loc[1, MODEL_FEATURES[0]] = np.nan  # a missing feature travels as an empty cell
    return frame


def _expected_scores(frame: pd.DataFrame) -> list[float]:
    return [_fraud_probability(a) for a in frame["amount"]]


@pytest.mark.emulators
def test_score_lightgbm_version_scores_the_loaded_model_without_vertex(
    fake_gcs: FakeGcs, model_dirs: tuple[Path, Path]
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    models, jobs = FakeModelService(), FakeJobService(fake_gcs.client)
    registry = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket, models=models)
    version = _register(registry, model_dirs[1])
    models.client.calls.clear()
    frame = _holdout(50)

    scores = registry.score(version, frame)

    assert scores == pytest.approx(load_model(model_dirs[1]).score_frame(frame))
    assert jobs.client.calls == [] and models.client.calls == []


@pytest.mark.emulators
def test_score_automl_version_batch_predicts_that_version_and_returns_row_order(
    fake_gcs: FakeGcs,
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs, clock = FakeJobService(fake_gcs.client), FakeClock()
    frame = _holdout()

    scores = _scoring_registry(fake_gcs, jobs, clock, bucket=bucket).score(AUTOML_V2, frame)

    assert list(scores) == pytest.approx(_expected_scores(frame))
    input_uri = jobs.input_uri()
    folder = input_uri.removesuffix("/input.csv")
    assert re.fullmatch(rf"gs://{bucket}/models/batch-scores/v0002/[0-9a-f]{{16}}", folder)
    assert folder.rsplit("/", 1)[1] == hashlib.sha256(jobs.input_bytes()).hexdigest()[:16]
    create = jobs.client.calls[0]
    assert create.method == "create_batch_prediction_job"
    assert create.request == aiplatform_v1.CreateBatchPredictionJobRequest(
        parent=PARENT,
        batch_prediction_job=aiplatform_v1.BatchPredictionJob(
            display_name=f"fraud-mlops-score-v0002-{folder.rsplit('/', 1)[1]}",
            model=f"{MODEL}@2",
            input_config=aiplatform_v1.BatchPredictionJob.InputConfig(
                instances_format="csv", gcs_source=aiplatform_v1.GcsSource(uris=[input_uri])
            ),
            output_config=aiplatform_v1.BatchPredictionJob.OutputConfig(
                predictions_format="jsonl",
                gcs_destination=aiplatform_v1.GcsDestination(output_uri_prefix=f"{folder}/output"),
            ),
            dedicated_resources=aiplatform_v1.BatchDedicatedResources(
                machine_spec=aiplatform_v1.MachineSpec(machine_type="n1-standard-4"),
                starting_replica_count=1,
                max_replica_count=1,
            ),
            labels={"app": "fraud-mlops", "version": "v0002"},
        ),
    )
    # Polled until it succeeded, once per poll interval.
    assert (
        jobs.client.methods() == ["create_batch_prediction_job"] + ["get_batch_prediction_job"] * 2
    )
    assert jobs.client.calls[1].request == {"name": JOB}
    assert clock.sleeps == [30.0, 30.0]
    assert all(c.kwargs["timeout"] == 30.0 and c.kwargs["retry"] for c in jobs.client.calls)


@pytest.mark.emulators
def test_score_automl_input_csv_holds_the_model_features_and_row_ids_in_order(
    fake_gcs: FakeGcs,
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client)
    frame = _holdout()

    _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket).score(AUTOML_V2, frame)

    written = jobs.input_rows()
    assert list(written.columns) == ["row_id", *MODEL_FEATURES]  # no label, no card id
    assert list(written["row_id"]) == list(range(len(frame)))
    pd.testing.assert_frame_equal(
        written[list(MODEL_FEATURES)],
        frame[list(MODEL_FEATURES)].reset_index(drop=True),
        check_dtype=False,
    )
    assert written[MODEL_FEATURES[0]].isna().tolist() == [False, True, False, False, False]


@pytest.mark.emulators
def test_score_automl_same_rows_again_reuses_the_input_object(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.new_bucket(versioning=True)
    frame = _holdout()
    first = FakeJobService(fake_gcs.client)
    _scoring_registry(fake_gcs, first, FakeClock(), bucket=bucket).score(AUTOML_V2, frame)
    name = first.input_uri().removeprefix(f"gs://{bucket}/")
    generation = fake_gcs.client.bucket(bucket).get_blob(name).generation
    again = FakeJobService(fake_gcs.client)

    scores = _scoring_registry(fake_gcs, again, FakeClock(), bucket=bucket).score(AUTOML_V2, frame)

    assert again.input_uri() == first.input_uri()
    # Create-only met the same bytes: the input object has no second generation.
    versions = [b for b in fake_gcs.client.list_blobs(bucket, versions=True) if b.name == name]
    assert [b.generation for b in versions] == [generation]
    assert list(scores) == pytest.approx(_expected_scores(frame))


@pytest.mark.emulators
def test_score_automl_keyed_predictions_map_back_by_key(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client, write=lambda jobs: jobs.predict(keyed=True))
    frame = _holdout()

    scores = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket).score(AUTOML_V2, frame)

    assert list(scores) == pytest.approx(_expected_scores(frame))


@pytest.mark.emulators
def test_score_automl_job_failed_raises_backend_unavailable_with_its_error(
    fake_gcs: FakeGcs,
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(
        fake_gcs.client, states=(RUNNING, FAILED), error="Model server terminated: OOM"
    )
    registry = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket)

    with pytest.raises(BackendUnavailableError, match="4242 ended JOB_STATE_FAILED: Model server"):
        registry.score(AUTOML_V2, _holdout())
    assert "cancel_batch_prediction_job" not in jobs.client.methods()


@pytest.mark.emulators
def test_score_automl_job_outlasting_the_wait_is_cancelled_and_raises(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs, clock = FakeJobService(fake_gcs.client, states=(RUNNING,)), FakeClock()
    registry = _scoring_registry(fake_gcs, jobs, clock, bucket=bucket, wait=100.0)

    with pytest.raises(BackendUnavailableError, match="within 100 s; it was asked to cancel"):
        registry.score(AUTOML_V2, _holdout())

    cancel = jobs.client.calls[-1]
    assert (cancel.method, cancel.request) == ("cancel_batch_prediction_job", {"name": JOB})
    assert clock.sleeps == [30.0] * 4  # polled at 30, 60, 90, 120 s: past the 100 s bound
    assert all(c.kwargs["timeout"] == 30.0 and c.kwargs["retry"] for c in jobs.client.calls)


@pytest.mark.emulators
def test_score_automl_row_without_a_prediction_raises_backend_unavailable(
    fake_gcs: FakeGcs,
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client, write=lambda jobs: jobs.predict(drop=[2]))
    registry = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket)

    with pytest.raises(BackendUnavailableError, match=r"no score for 1 of 5 rows \(first: row 2\)"):
        registry.score(AUTOML_V2, _holdout())


@pytest.mark.emulators
def test_score_automl_errors_file_with_rows_raises_backend_unavailable(fake_gcs: FakeGcs) -> None:
    def predict_with_an_error(jobs: FakeJobService) -> None:
        jobs.predict()
        jobs.put("errors_00001.jsonl", ['{"instance": {"row_id": "3"}, "error": "bad"}'])

    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client, write=predict_with_an_error)
    registry = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket)

    with pytest.raises(BackendUnavailableError, match="4242 failed for 1 rows"):
        registry.score(AUTOML_V2, _holdout())


@pytest.mark.emulators
def test_score_automl_unreadable_prediction_raises_backend_unavailable(fake_gcs: FakeGcs) -> None:
    def predict_without_fraud_class(jobs: FakeJobService) -> None:
        jobs.put("predictions_00001.jsonl", [{"key": 0, "prediction": {"classes": ["0"]}}])

    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client, write=predict_without_fraud_class)
    registry = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket)

    with pytest.raises(BackendUnavailableError, match=r"predictions_00001.jsonl:1: unreadable"):
        registry.score(AUTOML_V2, _holdout())


@pytest.mark.emulators
def test_score_automl_transient_job_errors_are_retried(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    jobs = FakeJobService(fake_gcs.client, states=(SUCCEEDED,))
    jobs.failures["create_batch_prediction_job"] = [gexc.ServiceUnavailable("blip")]
    jobs.failures["get_batch_prediction_job"] = [gexc.DeadlineExceeded("slow")]
    frame = _holdout()

    scores = _scoring_registry(fake_gcs, jobs, FakeClock(), bucket=bucket).score(AUTOML_V2, frame)

    assert (
        jobs.client.methods()
        == ["create_batch_prediction_job"] * 2 + ["get_batch_prediction_job"] * 2
    )
    assert list(scores) == pytest.approx(_expected_scores(frame))


def test_score_automl_frame_without_a_feature_raises_invalid_input() -> None:
    jobs = FakeJobService()
    registry = _scoring_registry(None, jobs, FakeClock())

    with pytest.raises(InvalidInputError, match="lacks model feature columns: amount"):
        registry.score(AUTOML_V2, _holdout().drop(columns=["amount"]))
    assert jobs.client.calls == []


def test_score_automl_no_rows_is_empty_without_a_job() -> None:
    jobs = FakeJobService()

    scores = _scoring_registry(None, jobs, FakeClock()).score(AUTOML_V2, _holdout().head(0))

    assert scores.shape == (0,) and jobs.client.calls == []


# -- composition ---------------------------------------------------------------------------


def test_from_config_uses_the_gcp_calls_policy(tmp_path: Path) -> None:
    calls = CallPolicyConfig(timeout_seconds=3.0, deadline_seconds=9.0)
    cfg = RuntimeConfig.local(tmp_path).model_copy(
        update={"registry": _section(), "gcp_calls": calls}
    )

    registry = VertexModelRegistry.from_config(_section(), Backends(cfg))

    assert registry.policy == CallPolicy.from_config(calls)
    assert registry.model_name == MODEL
