"""The model registry on Vertex AI Model Registry: one Model, each candidate a version of it.

A version's project-level name is ``v%04d`` of its Vertex version id. Its labels
(``snapshot_id``, ``run_name``, metrics, ``trainer``, ``app``) are for filtering and for
people; its ``version_description`` is JSON holding the exact snapshot, run, threshold,
metrics and params, which is what :meth:`VertexModelRegistry.get` reads back (labels are
lowercased and truncated, so they only narrow a search).

``register`` copies the artifact directory to ``{artifact_root}/{run}/{content}/`` in
GCS (create-only uploads: a retried step re-uploads harmlessly) and uploads it as a
version served by the project's container; ``adopt`` copies a model another service
trained (AutoML's) in as a version. Both are idempotent per (snapshot, run).

``score`` runs a lightgbm version here and an AutoML one, which only Vertex AI can run,
as a batch prediction of exactly that version on the given rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, Self

import numpy as np
import pandas as pd
from google.api_core import retry as gretry

from app.backends.gcp.calls import CallPolicy, seam, vertex_client_options
from app.backends.gcp.calls import vertex_label as label_value
from app.backends.gcp.gcs_landing import transient
from app.core.config import VertexModelRegistryConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.artifact import FraudModel, load_model
from app.core.ports import Services
from app.core.records import ModelVersion
from app.core.schema import MODEL_FEATURES

log = logging.getLogger("fraud_mlops.backends.vertex_registry")

APP_LABEL = "fraud-mlops"
# The serving contract of app/serving's container: Vertex passes these to it as
# AIP_HTTP_PORT, AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE, so the server reads them there.
SERVING_PORT = 8080
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
FRAMEWORK_LIGHTGBM = "lightgbm"
FRAMEWORK_AUTOML = "automl"
_VERSION_NAME = re.compile(r"^v([0-9]{4,})$")
_CHUNK = 1 << 20
# Batch scoring: one small machine is plenty for a holdout's rows, and caps the cost.
BATCH_MACHINE_TYPE = "n1-standard-4"
ROW_ID = "row_id"
# JobState names: the ones a batch prediction job ends in.
_JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
_JOB_ENDED = frozenset(
    {
        _JOB_SUCCEEDED,
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)


def metric_label(value: float) -> str:
    """A metric as a label value: 4 decimals, ``.`` as ``_`` (0.63014 -> ``0_6301``)."""
    return f"{value:.4f}".replace(".", "_")


def version_name(version_id: str | int) -> str:
    return f"v{int(version_id):04d}"


def version_id_of(version: str) -> str:
    """The Vertex version id in a project-level name (``v0003`` -> ``3``)."""
    match = _VERSION_NAME.match(version)
    if match is None:
        raise NotFoundError(f"model version {version!r} is not registered (not a v%04d name)")
    return str(int(match.group(1)))


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> (``bucket``, ``a/b``)."""
    if not uri.startswith("gs://"):
        raise ConfigError(f"{uri!r} is not a gs:// URI")
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


class VertexModelRegistry:
    def __init__(
        self,
        section: VertexModelRegistryConfig,
        *,
        policy: CallPolicy,
        models: Any = None,
        storage_client: Any = None,
        jobs: Any = None,
        operation_wait_seconds: float = 900.0,
        batch_wait_seconds: float = 3600.0,
        batch_poll_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self.policy = policy
        # An upload or copy takes minutes, longer than a call's retry deadline.
        self.operation_wait = max(policy.deadline, operation_wait_seconds)
        # A batch prediction provisions a machine first: tens of minutes, bounded here.
        self.batch_wait = batch_wait_seconds
        self.batch_poll = batch_poll_seconds
        self._models = models
        self._storage = storage_client
        self._jobs = jobs
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self.parent = f"projects/{section.project}/locations/{section.location}"
        self.model_name = f"{self.parent}/models/{section.model_id}"

    @classmethod
    def from_config(cls, section: VertexModelRegistryConfig, backends: Services) -> Self:
        return cls(section, policy=CallPolicy.from_config(backends.config.gcp_calls))

    # -- clients, made once per instance -------------------------------------------

    def _model_client(self) -> Any:
        with self._lock:
            if self._models is None:
                from google.cloud import aiplatform_v1

                # Vertex AI is regional: the Model Registry answers on the region's endpoint.
                self._models = aiplatform_v1.ModelServiceClient(
                    client_options=vertex_client_options(self.section.location)
                )
            return self._models

    def _job_client(self) -> Any:
        with self._lock:
            if self._jobs is None:
                from google.cloud import aiplatform_v1

                self._jobs = aiplatform_v1.JobServiceClient(
                    client_options=vertex_client_options(self.section.location)
                )
            return self._jobs

    def _storage_client(self) -> Any:
        with self._lock:
            if self._storage is None:
                from google.cloud import storage

                with seam("create the Cloud Storage client"):
                    self._storage = storage.Client(project=self.section.project)
            return self._storage

    def _gcs_retry(self) -> gretry.Retry:
        # The policy's deadline and backoff, with what Cloud Storage counts as transient.
        return self.policy.retry().with_predicate(transient)

    # -- registering -----------------------------------------------------------------

    def register(
        self,
        *,
        artifact_path: Path,
        snapshot_id: str,
        run_name: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion:
        """Upload the model directory and make it the next version, unless this run
        already registered one for this snapshot: then return that."""
        if not artifact_path.is_dir():
            raise InvalidInputError(
                "a model artifact must be a model directory", location=str(artifact_path)
            )
        description, labels = _describe(
            snapshot_id, run_name, threshold, metrics, params, FRAMEWORK_LIGHTGBM
        )
        existing = self._registered_by(snapshot_id, run_name)
        if existing is not None:
            return existing
        artifact_uri = self._upload_artifact(artifact_path, run_name)

        def upload(destination: dict[str, str]) -> Any:
            from google.cloud import aiplatform_v1

            request = aiplatform_v1.UploadModelRequest(
                parent=self.parent,
                model=aiplatform_v1.Model(
                    display_name=self.section.model_display_name,
                    artifact_uri=artifact_uri,
                    container_spec=aiplatform_v1.ModelContainerSpec(
                        image_uri=self.section.serving_image,
                        predict_route=PREDICT_ROUTE,
                        health_route=HEALTH_ROUTE,
                        ports=[aiplatform_v1.Port(container_port=SERVING_PORT)],
                    ),
                    labels=labels,
                    version_description=description,
                ),
                **destination,
            )
            with seam(f"uploading {artifact_uri} as a version of {self.model_name}"):
                operation = self._model_client().upload_model(
                    request=request, timeout=self.policy.timeout, retry=self.policy.retry()
                )
                return operation.result(timeout=self.operation_wait)

        response = self._create_version(upload)
        return self._settle(str(response.model_version_id), snapshot_id, run_name)

    def adopt(
        self,
        *,
        model_resource: str,
        snapshot_id: str,
        run_name: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion:
        """Copy ``model_resource`` (a model another service trained) in as the next
        version, then label and describe it as :meth:`register` does."""
        if not model_resource.startswith("projects/") or "/models/" not in model_resource:
            raise InvalidInputError(
                "is not a Vertex AI model resource (projects/…/models/…)", location="model_resource"
            )
        description, labels = _describe(
            snapshot_id, run_name, threshold, metrics, params, FRAMEWORK_AUTOML
        )
        existing = self._registered_by(snapshot_id, run_name)
        if existing is not None:
            return existing

        def copy(destination: dict[str, str]) -> Any:
            from google.cloud import aiplatform_v1

            request = aiplatform_v1.CopyModelRequest(
                parent=self.parent, source_model=model_resource, **destination
            )
            with seam(f"copying {model_resource} into {self.model_name}"):
                operation = self._model_client().copy_model(
                    request=request, timeout=self.policy.timeout, retry=self.policy.retry()
                )
                return operation.result(timeout=self.operation_wait)

        response = self._create_version(copy)
        version_id = str(response.model_version_id)
        # CopyModel takes no labels or description: they are set on the new version now.
        # Until they are, the version is not this project's (lookups skip it), so a step
        # that dies in between copies again rather than finding a half-made version.
        self._describe_version(version_id, labels, description)
        return self._settle(version_id, snapshot_id, run_name)

    def _create_version(self, create: Any) -> Any:
        """``create(destination)`` as the model's next version: with ``model_id`` while
        the model does not exist yet (its first version makes it), else ``parent_model``.

        Two first registrations can race; the loser's ``model_id`` meets AlreadyExists
        and it retries as a version of the model the winner made.
        """
        if self._model_exists():
            return create({"parent_model": self.model_name})
        try:
            return create({"model_id": self.section.model_id})
        except ConflictError:
            log.info("%s was created meanwhile; adding a version to it", self.model_name)
            return create({"parent_model": self.model_name})

    def _model_exists(self) -> bool:
        try:
            with seam(f"reading {self.model_name}"):
                self._model_client().get_model(
                    request={"name": self.model_name},
                    timeout=self.policy.timeout,
                    retry=self.policy.retry(),
                )
        except NotFoundError:
            return False
        return True

    def _describe_version(self, version_id: str, labels: dict[str, str], description: str) -> None:
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        name = f"{self.model_name}@{version_id}"
        request = aiplatform_v1.UpdateModelRequest(
            model=aiplatform_v1.Model(name=name, labels=labels, version_description=description),
            update_mask=field_mask_pb2.FieldMask(paths=["labels", "version_description"]),
        )
        with seam(f"labelling {name}"):
            self._model_client().update_model(
                request=request, timeout=self.policy.timeout, retry=self.policy.retry()
            )

    def _settle(self, version_id: str, snapshot_id: str, run_name: str) -> ModelVersion:
        """The version (snapshot, run) ends up with: the oldest one, should two attempts
        of one run have registered at once, so every attempt returns the same one."""
        found = self._registered_by(snapshot_id, run_name)
        if found is not None:
            if found.version != version_name(version_id):
                log.warning(
                    "%s registered %s twice; %s is kept as its version",
                    run_name,
                    version_name(version_id),
                    found.version,
                )
            return found
        # Just made, and a list may lag a create: read the version itself.
        return self.get(version_name(version_id))

    def _registered_by(self, snapshot_id: str, run_name: str) -> ModelVersion | None:
        labels = f'labels.snapshot_id="{label_value(snapshot_id)}" AND '
        labels += f'labels.run_name="{label_value(run_name)}"'
        for version in self._versions(labels):
            # Labels are lowercased and truncated: the description holds the exact values.
            if (version.snapshot_id, version.run_name) == (snapshot_id, run_name):
                return version
        return None

    # -- the artifact ------------------------------------------------------------------

    def _upload_artifact(self, directory: Path, run_name: str) -> str:
        """Copy ``directory``'s files to GCS under a prefix named by the run and the
        content, create-only: the same bytes again are a no-op, other bytes (a retried
        run that retrained) go to a prefix of their own; nothing is ever overwritten."""
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        if not files:
            raise InvalidInputError("the model directory is empty", location=str(directory))
        digests = {p: _md5(p) for p in files}
        content = hashlib.sha256()
        for path in files:
            content.update(f"{path.relative_to(directory).as_posix()}\0{digests[path]}\0".encode())
        bucket_name, root = split_gcs_uri(self.section.artifact_root)
        prefix = "/".join(
            part for part in (root, label_value(run_name), content.hexdigest()[:16]) if part
        )
        bucket = self._storage_client().bucket(bucket_name)
        for path in files:
            name = f"{prefix}/{path.relative_to(directory).as_posix()}"
            blob = bucket.blob(name)
            try:
                with seam(f"uploading gs://{bucket_name}/{name}"):
                    blob.upload_from_filename(
                        str(path),
                        if_generation_match=0,
                        timeout=self.policy.timeout,
                        retry=self._gcs_retry(),
                    )
            except ConflictError:
                self._check_existing(bucket, name, digests[path])
        return f"gs://{bucket_name}/{prefix}/"

    def _check_existing(self, bucket: Any, name: str, md5: str) -> None:
        with seam(f"reading gs://{bucket.name}/{name}"):
            existing = bucket.get_blob(name, timeout=self.policy.timeout, retry=self._gcs_retry())
        if existing is None or existing.md5_hash != md5:
            raise ConflictError(
                f"gs://{bucket.name}/{name} holds other bytes than this artifact's; "
                "artifacts are never replaced"
            )

    # -- reading -------------------------------------------------------------------------

    def get(self, version: str) -> ModelVersion:
        name = f"{self.model_name}@{version_id_of(version)}"
        try:
            with seam(f"reading {name}"):
                model = self._model_client().get_model(
                    request={"name": name}, timeout=self.policy.timeout, retry=self.policy.retry()
                )
        except NotFoundError as exc:
            raise NotFoundError(f"model version {version!r} is not registered") from exc
        found = _to_model_version(model)
        if found is None:
            raise NotFoundError(f"model version {version!r} is not one this project registered")
        return found

    def list_versions(self) -> list[ModelVersion]:
        return self._versions(f'labels.app="{APP_LABEL}"')

    def versions_for_snapshot(self, snapshot_id: str) -> list[ModelVersion]:
        wanted = f'labels.snapshot_id="{label_value(snapshot_id)}"'
        return [v for v in self._versions(wanted) if v.snapshot_id == snapshot_id]

    def _versions(self, label_filter: str) -> list[ModelVersion]:
        """This project's versions matching ``label_filter``, oldest first; none before
        the model exists."""
        found: list[tuple[int, ModelVersion]] = []
        try:
            with seam(f"listing versions of {self.model_name}"):
                pages = self._model_client().list_model_versions(
                    request={"name": self.model_name, "filter": label_filter},
                    timeout=self.policy.timeout,
                    retry=self.policy.retry(),
                )
                for model in pages:
                    version = _to_model_version(model)
                    if version is not None:
                        found.append((int(model.version_id), version))
        except NotFoundError:
            return []  # the first registration creates the model
        return [version for _, version in sorted(found, key=lambda pair: pair[0])]

    def is_newer(self, version: ModelVersion, than: ModelVersion) -> bool:
        # Vertex numbers a model's versions 1, 2, 3, … in the order they are created.
        return int(version_id_of(version.version)) > int(version_id_of(than.version))

    # -- scoring -------------------------------------------------------------------------

    def score(self, version: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
        if version.params.get("framework") != FRAMEWORK_AUTOML:
            return self.load(version).score_frame(frame)
        missing = [name for name in MODEL_FEATURES if name not in frame.columns]
        if missing:
            raise InvalidInputError(f"frame lacks model feature columns: {', '.join(missing)}")
        if len(frame) == 0:
            return np.empty(0, dtype=np.float64)
        # The columns as export_automl_dataset writes AutoML's CSVs (the frame's own
        # values, not re-typed), with the id the predictions are joined back by.
        rows = frame[list(MODEL_FEATURES)].copy()
        rows.insert(0, ROW_ID, range(len(frame)))
        data = rows.to_csv(index=False).encode("utf-8")
        folder = self._batch_folder(version.version, hashlib.sha256(data).hexdigest()[:16])
        input_uri = self._upload_rows(f"{folder}/input.csv", data)
        job = self._wait_for_job(self._create_batch_job(version, folder, input_uri))
        scores = self._read_predictions(str(job.name), str(job.output_info.gcs_output_directory))
        missing_rows = [i for i in range(len(frame)) if i not in scores]
        if missing_rows:
            raise BackendUnavailableError(
                f"batch prediction job {job.name} has no score for {len(missing_rows)} of "
                f"{len(frame)} rows (first: row {missing_rows[0]})"
            )
        return np.array([scores[i] for i in range(len(frame))], dtype=np.float64)

    def _batch_folder(self, version: str, content: str) -> str:
        bucket_name, root = split_gcs_uri(self.section.artifact_root)
        prefix = "/".join(part for part in (root, "batch-scores", version, content) if part)
        return f"gs://{bucket_name}/{prefix}"

    def _upload_rows(self, uri: str, data: bytes) -> str:
        """Create-only: named by its content, so a retry meets the same bytes."""
        bucket_name, name = split_gcs_uri(uri)
        bucket = self._storage_client().bucket(bucket_name)
        try:
            with seam(f"uploading {uri}"):
                bucket.blob(name).upload_from_string(
                    data,
                    content_type="text/csv",
                    if_generation_match=0,
                    timeout=self.policy.timeout,
                    retry=self._gcs_retry(),
                )
        except ConflictError:
            digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            self._check_existing(bucket, name, digest)
        return uri

    def _create_batch_job(self, version: ModelVersion, folder: str, input_uri: str) -> Any:
        from google.cloud import aiplatform_v1

        model = f"{self.model_name}@{version_id_of(version.version)}"
        job = aiplatform_v1.BatchPredictionJob(
            display_name=f"fraud-mlops-score-{version.version}-{folder.rsplit('/', 1)[-1]}",
            model=model,
            input_config=aiplatform_v1.BatchPredictionJob.InputConfig(
                instances_format="csv",
                gcs_source=aiplatform_v1.GcsSource(uris=[input_uri]),
            ),
            output_config=aiplatform_v1.BatchPredictionJob.OutputConfig(
                predictions_format="jsonl",
                gcs_destination=aiplatform_v1.GcsDestination(output_uri_prefix=f"{folder}/output"),
            ),
            dedicated_resources=aiplatform_v1.BatchDedicatedResources(
                machine_spec=aiplatform_v1.MachineSpec(machine_type=BATCH_MACHINE_TYPE),
                starting_replica_count=1,
                max_replica_count=1,
            ),
            labels={"app": APP_LABEL, "version": label_value(version.version)},
            # No service_account: the registry's config names none, so the job runs as
            # the Vertex AI service agent, which must read and write the artifact root.
        )
        request = aiplatform_v1.CreateBatchPredictionJobRequest(
            parent=self.parent, batch_prediction_job=job
        )
        with seam(f"creating a batch prediction of {model}"):
            created = self._job_client().create_batch_prediction_job(
                request=request, timeout=self.policy.timeout, retry=self.policy.retry()
            )
        log.info("batch prediction job %s scores %s on %s", created.name, model, input_uri)
        return created

    def _get_job(self, name: str) -> Any:
        with seam(f"reading batch prediction job {name}"):
            return self._job_client().get_batch_prediction_job(
                request={"name": name}, timeout=self.policy.timeout, retry=self.policy.retry()
            )

    def _wait_for_job(self, job: Any) -> Any:
        """Poll until the job ends; cancel it and raise when it runs out of time."""
        name = str(job.name)
        deadline = self._clock() + self.batch_wait
        while _state(job) not in _JOB_ENDED:
            if self._clock() >= deadline:
                raise self._batch_timed_out(name)
            self._sleep(self.batch_poll)
            job = self._get_job(name)
        if _state(job) != _JOB_SUCCEEDED:
            raise BackendUnavailableError(
                f"batch prediction job {name} ended {_state(job)}: "
                f"{job.error.message or 'no error message'}"
            )
        return job

    def _batch_timed_out(self, name: str) -> BackendUnavailableError:
        message = (
            f"batch prediction job {name} did not end within {self.batch_wait:.0f} s; "
            "it was asked to cancel"
        )
        try:
            with seam(f"cancelling batch prediction job {name}"):
                self._job_client().cancel_batch_prediction_job(
                    request={"name": name}, timeout=self.policy.timeout, retry=self.policy.retry()
                )
        except FraudMlopsError as exc:
            # Still the timeout to report; the cancel's failure says the job may run on.
            message = (
                f"batch prediction job {name} did not end within {self.batch_wait:.0f} s "
                f"and could not be cancelled: {exc}"
            )
        return BackendUnavailableError(message)

    def _read_predictions(self, job_name: str, directory: str) -> dict[int, float]:
        """Row id -> score from every ``prediction*.jsonl`` in the job's output; rows
        Vertex AI could not score (its ``errors_*`` files) fail the whole scoring."""
        bucket_name, prefix = split_gcs_uri(directory)
        scores: dict[int, float] = {}
        failed = 0
        with seam(f"reading the predictions under {directory}"):
            blobs = list(
                self._storage_client().list_blobs(
                    bucket_name,
                    prefix=f"{prefix}/",
                    timeout=self.policy.timeout,
                    retry=self._gcs_retry(),
                )
            )
            for blob in sorted(blobs, key=lambda b: str(b.name)):
                base = PurePosixPath(blob.name).name
                is_errors = fnmatchcase(base, "errors_*")
                if not is_errors and not fnmatchcase(base, "prediction*.jsonl"):
                    continue
                text = blob.download_as_bytes(
                    timeout=self.policy.timeout, retry=self._gcs_retry()
                ).decode("utf-8")
                lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
                if is_errors:
                    failed += len(lines)
                    continue
                for number, line in lines:
                    where = f"gs://{bucket_name}/{blob.name}:{number}"
                    row, score = _prediction(line, where)
                    if row in scores:
                        raise BackendUnavailableError(f"{where}: row {row} predicted twice")
                    scores[row] = score
        if failed:
            raise BackendUnavailableError(
                f"batch prediction job {job_name} failed for {failed} rows (errors_* under "
                f"{directory})"
            )
        return scores

    def load(self, version: ModelVersion) -> FraudModel:
        if version.params.get("framework") == FRAMEWORK_AUTOML:
            raise ConfigError(
                f"{version.version} is an AutoML model: Vertex AI scores it on the endpoint, "
                "it cannot be loaded here"
            )
        try:
            with self._downloaded(version.artifact_uri) as directory:
                return load_model(directory)
        except (NotFoundError, InvalidInputError, ConfigError, OSError) as exc:
            raise BackendUnavailableError(
                f"model {version.version} at {version.artifact_uri} cannot be loaded: {exc}"
            ) from exc

    @contextmanager
    def _downloaded(self, artifact_uri: str) -> Iterator[Path]:
        bucket_name, prefix = split_gcs_uri(artifact_uri)
        client = self._storage_client()
        directory = Path(tempfile.mkdtemp(prefix="fraud-mlops-model-"))
        try:
            with seam(f"downloading {artifact_uri}"):
                blobs = list(
                    client.list_blobs(
                        bucket_name,
                        prefix=f"{prefix}/",
                        timeout=self.policy.timeout,
                        retry=self._gcs_retry(),
                    )
                )
                for blob in blobs:
                    relative = PurePosixPath(blob.name[len(prefix) + 1 :])
                    if not relative.parts or ".." in relative.parts or blob.name.endswith("/"):
                        continue  # a folder placeholder, or a name that is no file of ours
                    target = directory.joinpath(*relative.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    blob.download_to_filename(
                        str(target), timeout=self.policy.timeout, retry=self._gcs_retry()
                    )
            if not blobs:
                raise NotFoundError(f"no artifact files under {artifact_uri}")
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _describe(
    snapshot_id: str,
    run_name: str,
    threshold: float,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    framework: str,
) -> tuple[str, dict[str, str]]:
    """A version's description (the exact record) and labels (for filters and people)."""
    if not run_name:
        # Without a run name a retried step could not find what it registered.
        raise InvalidInputError("a registration must name its run", location="run_name")
    if not snapshot_id:
        raise InvalidInputError("a registration must name its snapshot", location="snapshot_id")
    record = {
        "snapshot_id": snapshot_id,
        "run_name": run_name,
        "threshold": float(threshold),
        "metrics": dict(metrics),
        "params": {"framework": framework, **dict(params)},
    }
    try:
        description = json.dumps(record, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metrics and params must be JSON numbers and strings: {exc}"
        ) from exc
    labels = {
        "app": APP_LABEL,
        "snapshot_id": label_value(snapshot_id),
        "run_name": label_value(run_name),
        "trainer": "automl" if framework == FRAMEWORK_AUTOML else "custom",
    }
    for metric in ("auprc", "roc_auc"):
        if isinstance(metrics.get(metric), int | float):
            labels[metric] = metric_label(float(metrics[metric]))
    return description, labels


def _to_model_version(model: Any) -> ModelVersion | None:
    """The project's record of a Vertex model version; None for a version this project
    did not describe (one made by hand, or an adopted copy not yet labelled)."""
    try:
        record = json.loads(model.version_description or "")
        threshold = float(record["threshold"])
        snapshot_id, run_name = str(record["snapshot_id"]), str(record["run_name"])
        metrics, params = dict(record["metrics"]), dict(record["params"])
        version = version_name(model.version_id)
    except (ValueError, TypeError, KeyError):
        return None
    created: datetime | None = getattr(model, "version_create_time", None)
    return ModelVersion(
        version=version,
        snapshot_id=snapshot_id,
        # An adopted AutoML copy may have no artifact of its own: its resource names it.
        artifact_uri=str(model.artifact_uri or f"{model.name}@{model.version_id}"),
        threshold=threshold,
        metrics=metrics,
        params=params,
        created_at=created.isoformat(timespec="seconds") if created else "",
        run_name=run_name,
    )


def _state(job: Any) -> str:
    from google.cloud import aiplatform_v1

    return aiplatform_v1.JobState(job.state).name


def _prediction(line: str, where: str) -> tuple[int, float]:
    """One line of an AutoML tabular batch prediction, as evaluate_predictions reads it:
    the row's id (``instance.row_id``, or ``key``) and the score of class ``"1"``."""
    try:
        record = json.loads(line)
        key = record["key"] if "key" in record else record["instance"][ROW_ID]
        # A CSV instance comes back as strings ("3"); an id is a whole number however spelt.
        row = float(key)
        if not row.is_integer():
            raise ValueError(f"row id {key!r} is not a whole number")
        classes = [str(c) for c in record["prediction"]["classes"]]
        # AutoML's classes are the label's values as strings; "1" is fraud.
        score = float(record["prediction"]["scores"][classes.index("1")])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BackendUnavailableError(
            f"{where}: unreadable batch prediction ({type(exc).__name__}: {exc})"
        ) from exc
    return int(row), score


def _md5(path: Path) -> str:
    """Base64 MD5, as GCS reports an object's."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")
