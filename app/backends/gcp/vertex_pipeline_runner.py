"""The training pipeline on Vertex AI Pipelines: submit the compiled template, wait, read
the run's outcome back from its task details.

The GAPIC ``aiplatform_v1.PipelineServiceClient`` is used rather than
``aiplatform.PipelineJob``: every call then carries the project's per-attempt timeout and
retry deadline (:mod:`app.backends.gcp.calls`), nothing blocks in an SDK loop of its own,
and the exact ``CreatePipelineJobRequest`` is what the tests assert. As the SDK does for a
``gs://`` template (``template_uri`` is only for Artifact Registry and https templates),
the YAML is downloaded and sent as the job's ``pipeline_spec``.

A run name is one run, forever. The job id is derived from it (its slug plus a hash of the
exact name), so a retried DAG task that submits again gets AlreadyExists and re-attaches
to the job it started instead of training twice. A job that already ended keeps its
outcome: one that failed or was cancelled is reported as failed again, never resubmitted;
to retrain, start a run with a new name.

The outcome is read as data: each step's state and error from ``job_detail.task_details``,
and the pipeline's declared outputs (``deployed_version``, ``gate_reason``,
``metrics_json``) followed through the spec's DAG to the step that produced them, whose
execution metadata holds its output parameters. The result has the shape the local
runner returns for the same outcome.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

import yaml

from app.backends.gcp.calls import CallPolicy, seam, vertex_client_options
from app.backends.gcp.calls import vertex_label as label_value
from app.core.config import RuntimeConfig, VertexPipelineConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
    PipelineFailedError,
)
from app.core.ports import Services
from app.core.records import PipelineResult, RunFailure

log = logging.getLogger("fraud_mlops.backends.vertex_pipeline_runner")

# The local runner's rule: the DAG names runs the same way in both homes.
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Vertex AI's rule for a pipeline job id.
JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_JOB_ID_PREFIX = "fraud-training"
_MESSAGE_MAX = 300
# google.cloud.aiplatform_v1.PipelineState, by number (the enum is imported lazily).
_SUCCEEDED, _FAILED, _CANCELLED, _PAUSED = 4, 5, 7, 8
_TERMINAL = frozenset({_SUCCEEDED, _FAILED, _CANCELLED, _PAUSED})
# google.cloud.aiplatform_v1.PipelineTaskDetail.State, by number.
_TASK_SUCCEEDED, _TASK_CANCELLED, _TASK_FAILED, _TASK_SKIPPED, _TASK_NOT_TRIGGERED = 3, 6, 7, 8, 9
# A step's state in PipelineResult.steps, the local runner's words. Vertex's SKIPPED is a
# cache hit: the step's outputs exist as after a run, so it counts as succeeded.
_STEP_STATE = {
    _TASK_SUCCEEDED: "succeeded",
    _TASK_SKIPPED: "succeeded",
    _TASK_FAILED: "failed",
    _TASK_CANCELLED: "cancelled",
    4: "cancelled",  # CANCEL_PENDING
    5: "cancelled",  # CANCELLING
}
_RAN = frozenset({_TASK_SUCCEEDED, _TASK_SKIPPED})
_OUTPUTS = ("deployed_version", "gate_reason", "metrics_json")


def pipeline_job_id(run_name: str) -> str:
    """The one job id for ``run_name``: readable, and unique per exact name (the hash
    tells ``R1`` from ``r1`` and names that only differ past the truncated slug)."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_name.lower())[:96].strip("-")
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:10]
    return "-".join(part for part in (_JOB_ID_PREFIX, slug, digest) if part)


class VertexPipelineRunner:
    """:class:`app.core.ports.PipelineRunner` on Vertex AI Pipelines."""

    def __init__(
        self,
        section: VertexPipelineConfig,
        *,
        config: RuntimeConfig,
        policy: CallPolicy,
        client: Any = None,
        storage_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self.config = config
        self.policy = policy
        self._client = client
        self._storage = storage_client
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self.parent = f"projects/{section.project}/locations/{section.location}"

    @classmethod
    def from_config(cls, section: VertexPipelineConfig, backends: Services) -> Self:
        cfg = backends.config
        return cls(section, config=cfg, policy=CallPolicy.from_config(cfg.gcp_calls))

    # -- clients, made once per instance ------------------------------------------------

    def _pipeline_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import aiplatform_v1

                with seam("creating the Vertex AI pipeline client"):
                    # Vertex AI is regional: the service answers on the region's endpoint.
                    self._client = aiplatform_v1.PipelineServiceClient(
                        client_options=vertex_client_options(self.section.location)
                    )
            return self._client

    def _storage_client(self) -> Any:
        with self._lock:
            if self._storage is None:
                from google.cloud import storage

                with seam("creating the Cloud Storage client"):
                    self._storage = storage.Client(project=self.section.project)
            return self._storage

    # -- run ------------------------------------------------------------------------------

    def run(self, *, snapshot_id: str, run_name: str) -> PipelineResult:
        """Run (or re-attach to) the job for ``run_name`` and wait for its end.

        Raise PipelineFailedError when it failed or was cancelled (also when it had
        before this call: a new run name is the way to retrain), BackendUnavailableError
        when it did not end within ``run_timeout_seconds`` (it is cancelled then).
        """
        if not _RUN_NAME.match(run_name):
            raise InvalidInputError(
                f"run name {run_name!r} must be letters, digits, '.', '_' or '-'",
                location="run_name",
            )
        spec = self._template()
        job = self._submit(spec, snapshot_id=snapshot_id, run_name=run_name)
        job = self._wait(job)
        return _result(job, spec, snapshot_id=snapshot_id, run_name=run_name)

    def _template(self) -> dict[str, Any]:
        """The compiled pipeline at ``template_uri``, checked to run ``trainer_image``."""
        uri = self.section.template_uri
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        policy = self.policy
        from google.cloud.storage.exceptions import DataCorruption

        from app.backends.gcp.gcs_landing import transient

        try:
            with seam(f"reading the pipeline template {uri}"):
                try:
                    blob = self._storage_client().bucket(bucket).blob(name)
                    data = blob.download_as_bytes(
                        timeout=policy.timeout, retry=policy.retry().with_predicate(transient)
                    )
                except DataCorruption as exc:
                    raise BackendUnavailableError(
                        f"reading the pipeline template {uri}: the bytes received do not "
                        "match the object's checksum"
                    ) from exc
        except NotFoundError as exc:
            raise ConfigError(
                f"pipeline template {uri} does not exist; the stack compiles and uploads it"
            ) from exc
        try:
            spec = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline template {uri} is not YAML: {exc}") from exc
        if not isinstance(spec, dict) or "root" not in spec or "deploymentSpec" not in spec:
            raise ConfigError(f"pipeline template {uri} is not a compiled KFP pipeline spec")
        images = {
            executor.get("container", {}).get("image")
            for executor in spec["deploymentSpec"].get("executors", {}).values()
        }
        if self.section.trainer_image not in images:
            # A template compiled for another image would run code nobody deployed.
            raise ConfigError(
                f"pipeline template {uri} does not run the trainer image "
                f"{self.section.trainer_image}; recompile and upload it (the stack does)"
            )
        return spec

    def _submit(self, spec: dict[str, Any], *, snapshot_id: str, run_name: str) -> Any:
        from google.api_core import exceptions as gexc
        from google.cloud import aiplatform_v1

        job_id = pipeline_job_id(run_name)
        name = f"{self.parent}/pipelineJobs/{job_id}"
        request = aiplatform_v1.CreatePipelineJobRequest(
            parent=self.parent,
            pipeline_job_id=job_id,
            pipeline_job=aiplatform_v1.PipelineJob(
                display_name=run_name,
                pipeline_spec=spec,
                runtime_config=aiplatform_v1.PipelineJob.RuntimeConfig(
                    gcs_output_directory=self.section.pipeline_root,
                    parameter_values={
                        "config_json": self.config.to_json(),
                        "snapshot_id": snapshot_id,
                        "run_name": run_name,
                    },
                ),
                service_account=self.section.service_account,
                labels={
                    "app": "fraud-mlops",
                    "trainer": self.section.trainer,
                    "snapshot_id": label_value(snapshot_id),
                    "run_name": label_value(run_name),
                },
            ),
        )
        policy = self.policy
        with seam(f"submitting pipeline job {name}"):
            try:
                job = self._pipeline_client().create_pipeline_job(
                    request=request, timeout=policy.timeout, retry=policy.retry()
                )
                log.info("submitted pipeline job %s for run %s", name, run_name)
                return job
            except gexc.AlreadyExists:
                pass  # this run's job exists (an earlier attempt, or a retried create)
        existing = self._get(name)
        _check_same_run(existing, name, snapshot_id=snapshot_id, run_name=run_name)
        log.info("re-attached to pipeline job %s for run %s", name, run_name)
        return existing

    def _get(self, name: str) -> Any:
        policy = self.policy
        with seam(f"reading pipeline job {name}"):
            return self._pipeline_client().get_pipeline_job(
                request={"name": name}, timeout=policy.timeout, retry=policy.retry()
            )

    def _wait(self, job: Any) -> Any:
        """Poll until the job ends; cancel it and raise when it runs out of time."""
        deadline = self._clock() + self.section.run_timeout_seconds
        while int(job.state) not in _TERMINAL:
            if self._clock() >= deadline:
                raise self._timed_out(str(job.name))
            self._sleep(self.section.poll_seconds)
            job = self._get(str(job.name))
        return job

    def _timed_out(self, name: str) -> BackendUnavailableError:
        policy = self.policy
        message = (
            f"pipeline job {name} did not end within "
            f"{self.section.run_timeout_seconds:.0f} s; it was asked to cancel"
        )
        try:
            with seam(f"cancelling pipeline job {name}"):
                self._pipeline_client().cancel_pipeline_job(
                    request={"name": name}, timeout=policy.timeout, retry=policy.retry()
                )
        except FraudMlopsError as exc:
            # Still the timeout to report; the cancel's failure says the job may run on.
            message = (
                f"pipeline job {name} did not end within "
                f"{self.section.run_timeout_seconds:.0f} s and could not be cancelled: {exc}"
            )
        return BackendUnavailableError(message)


def _check_same_run(job: Any, name: str, *, snapshot_id: str, run_name: str) -> None:
    """The existing job must be this run: the same run name on the same snapshot."""
    params = job.runtime_config.parameter_values
    found = (params.get("snapshot_id"), params.get("run_name"))
    if found != (snapshot_id, run_name):
        raise ConflictError(
            f"pipeline job {name} ran run {found[1]!r} on snapshot {found[0]!r}, not "
            f"{run_name!r} on {snapshot_id!r}; a new run name starts a new run"
        )


# -- reading the outcome --------------------------------------------------------------------


class _Spec:
    """The job's pipeline spec as far as reading its outcome needs: which task names are
    steps (containers, not DAGs: the root, conditions) and where each output comes from."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.steps: set[str] = set()
        self._walk(spec.get("root", {}).get("dag", {}))

    def _component(self, task: Mapping[str, Any]) -> Mapping[str, Any]:
        components: Mapping[str, Any] = self.spec.get("components", {})
        found: Mapping[str, Any] = components.get(task["componentRef"]["name"], {})
        return found

    def _walk(self, dag: Mapping[str, Any]) -> None:
        for task in dag.get("tasks", {}).values():
            component = self._component(task)
            if "dag" in component:
                self._walk(component["dag"])
            else:
                self.steps.add(str(task["taskInfo"]["name"]))

    def output(self, key: str, tasks: Mapping[str, Any]) -> object:
        """The pipeline output ``key``, or None when no step that ran recorded it."""
        root = self.spec.get("root", {}).get("dag", {})
        selector = root.get("outputs", {}).get("parameters", {}).get(key)
        return None if selector is None else self._resolve(root, selector, tasks)

    def _resolve(self, dag: Mapping[str, Any], selector: Mapping[str, Any], tasks: Any) -> object:
        if "valueFromOneof" in selector:
            # dsl.OneOf: the value of the branch that ran.
            for choice in selector["valueFromOneof"].get("parameterSelectors", []):
                value = self._from_task(dag, choice, tasks)
                if value is not None:
                    return value
            return None
        if "valueFromParameter" in selector:
            return self._from_task(dag, selector["valueFromParameter"], tasks)
        return None

    def _from_task(self, dag: Mapping[str, Any], ref: Mapping[str, Any], tasks: Any) -> object:
        task = dag.get("tasks", {}).get(ref.get("producerSubtask"))
        if task is None:
            return None
        key = str(ref.get("outputParameterKey"))
        component = self._component(task)
        if "dag" in component:
            inner = component["dag"]
            selector = inner.get("outputs", {}).get("parameters", {}).get(key)
            return None if selector is None else self._resolve(inner, selector, tasks)
        detail = tasks.get(str(task["taskInfo"]["name"]))
        if detail is None or int(detail.state) not in _RAN:
            return None
        # Vertex AI records a step's output parameters in its execution's metadata as
        # "output:<name>": google-cloud-aiplatform reads them so (1.148,
        # model_evaluation/model_evaluation_job.py: "output:evaluation_resource_name";
        # pipeline_jobs.py: "output:model_a_evaluation_path").
        value: object = detail.execution.metadata.get(f"output:{key}")
        return value


def _task_details(job: Any) -> dict[str, Any]:
    return {str(t.task_name): t for t in job.job_detail.task_details}


def _spec_of(job: Any, submitted: Mapping[str, Any]) -> _Spec:
    """The spec the job ran (a re-attached job's own), else the one just submitted."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    own = json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(job).pipeline_spec)
    return _Spec(own if own.get("root") else submitted)


def _result(
    job: Any, submitted: Mapping[str, Any], *, snapshot_id: str, run_name: str
) -> PipelineResult:
    spec = _spec_of(job, submitted)
    tasks = _task_details(job)
    steps = {
        name.replace("-", "_"): _STEP_STATE.get(int(task.state), _state_name(task.state))
        for name, task in sorted(tasks.items(), key=lambda item: int(item[1].task_id))
        if name in spec.steps and int(task.state) != _TASK_NOT_TRIGGERED
    }
    state = int(job.state)
    if state != _SUCCEEDED:
        raise _failed(job, tasks, spec, run_name)
    outputs = {key: spec.output(key, tasks) for key in _OUTPUTS}
    missing = [key for key, value in outputs.items() if value is None]
    if missing:
        raise BackendUnavailableError(
            f"pipeline job {job.name} succeeded but its task details record no {missing}"
        )
    version = str(outputs["deployed_version"]) or None
    return PipelineResult(
        run_name=run_name,
        snapshot_id=snapshot_id,
        deployed=version is not None,
        gate_reason=str(outputs["gate_reason"]),
        metrics=_metrics(str(outputs["metrics_json"]), str(job.name)),
        model_version=version,
        steps=steps,
    )


def _metrics(text: str, name: str) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise BackendUnavailableError(
            f"pipeline job {name}: its metrics_json output is not a JSON object of numbers"
        ) from exc


def _failed(job: Any, tasks: Mapping[str, Any], spec: _Spec, run_name: str) -> PipelineFailedError:
    """The failure as data: the step that failed (or was cancelled) and its error.

    Vertex AI records a step's end (its container's exit, ``error``), not the project
    error the step raised, so the class is PipelineFailedError: a retry of the same run
    re-attaches to this job and would fail again.
    """
    state = int(job.state)
    wanted = _TASK_CANCELLED if state == _CANCELLED else _TASK_FAILED
    culprits = sorted(
        (t for n, t in tasks.items() if n in spec.steps and int(t.state) == wanted),
        key=lambda t: int(t.task_id),
    )
    word = {_CANCELLED: "was cancelled", _PAUSED: "is paused"}.get(state, "failed")
    if culprits:
        task = culprits[0]
        step = str(task.task_name).replace("-", "_")
        text = task.error.message or job.error.message
    else:
        step = "unknown"
        text = job.error.message
    message = _one_line(text or f"the pipeline job {word}")
    failure = RunFailure(task=step, error_class="PipelineFailedError", message=message)
    return PipelineFailedError(
        f"training run {run_name!r} {word} at step {step!r}: {message} "
        f"(Vertex AI pipeline job {job.name})",
        failure=failure,
    )


def _state_name(state: Any) -> str:
    name = getattr(state, "name", str(state))
    return str(name).lower()


def _one_line(text: str) -> str:
    # Vendor messages can be long and multi-line (a whole log excerpt).
    return " ".join(str(text).split())[:_MESSAGE_MAX]
