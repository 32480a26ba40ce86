"""The Vertex AI pipeline runner at its client boundary (Vertex AI Pipelines has no
emulator): the exact CreatePipelineJobRequest for a real compiled template (read from
fake-gcs-server where it runs), re-attaching to a run's job, the wait, and the outcome read
from task details shaped as Vertex AI records them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.vertex_pipeline_runner import (
    JOB_ID,
    VertexPipelineRunner,
    label_value,
    pipeline_job_id,
)
from app.core.config import RuntimeConfig, VertexPipelineConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    PipelineFailedError,
)
from app.core.records import PipelineResult, RunFailure
from app.pipeline.compile import compile_pipeline
from tests.support.recording import RecordingClient

if TYPE_CHECKING:
    from tests.support.fake_gcs import FakeGcs

pytest_plugins = ["tests.support.fake_gcs"]

IMAGE = "us-central1-docker.pkg.dev/p/r/trainer@sha256:" + "a" * 64
SECTION = VertexPipelineConfig(
    project="fraud-mlops-dev",
    location="europe-west1",
    pipeline_root="gs://fraud-mlops-dev-pipelines/root",
    template_uri="gs://fraud-mlops-dev-pipelines/templates/fraud_training_pipeline.yaml",
    service_account="pipeline@fraud-mlops-dev.iam.gserviceaccount.com",
    trainer_image=IMAGE,
    run_timeout_seconds=60,
    poll_seconds=5,
)
POLICY = CallPolicy(timeout=30.0, deadline=2.0, initial=0.01, maximum=0.02)
PARENT = "projects/fraud-mlops-dev/locations/europe-west1"
SNAPSHOT = "snap_0001_Creditcard.csv"
RUN = "train-snap-0001-Creditcard"
JOB_NAME = f"{PARENT}/pipelineJobs/{pipeline_job_id(RUN)}"
METRICS = {"auprc": 0.9132, "roc_auc": 0.9876, "threshold": 0.41, "rows": 1000.0}
PASSED = "Passed: AUPRC 0.9132 >= 0.5, ROC AUC 0.9876 >= 0.85; no model is deployed yet."
REJECTED = "Rejected: AUPRC 0.6012 is worse than deployed v0001's 0.9132."
WORKER_ERROR = (
    "The replica workerpool0-0 exited with a non-zero status of 1.\n"
    "Termination reason: Error. To find out more about why your job exited please check "
    "the logs: https://console.cloud.google.com/logs/viewer?project=123&resource=ml_job"
)

State = aiplatform_v1.PipelineState
Task = aiplatform_v1.PipelineTaskDetail.State


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The real compiled custom-trainer pipeline, for a digest-pinned image."""
    path = compile_pipeline(tmp_path_factory.mktemp("template") / "p.yaml", image=IMAGE)
    return path.read_bytes()


@pytest.fixture
def config(tmp_path: Path) -> RuntimeConfig:
    return RuntimeConfig.local(tmp_path / "home")


def _storage(data: bytes) -> tuple[RecordingClient, RecordingClient, RecordingClient]:
    """client.bucket(b).blob(n).download_as_bytes(...), each call recorded."""
    blob = RecordingClient({"download_as_bytes": data})
    bucket = RecordingClient({"blob": blob})
    return RecordingClient({"bucket": bucket}), bucket, blob


def _runner(
    config: RuntimeConfig,
    pipelines: RecordingClient,
    storage: Any,
    *,
    clock: Clock | None = None,
    section: VertexPipelineConfig = SECTION,
) -> VertexPipelineRunner:
    clock = clock or Clock()
    return VertexPipelineRunner(
        section,
        config=config,
        policy=POLICY,
        client=pipelines,
        storage_client=storage,
        sleep=clock.sleep,
        clock=clock,
    )


# -- task details, as Vertex AI records them -------------------------------------------------


def _task(
    task_id: int,
    name: str,
    state: int,
    *,
    parent: int = 1,
    outputs: dict[str, object] | None = None,
    dag: bool = False,
    error: str = "",
) -> aiplatform_v1.PipelineTaskDetail:
    metadata = {f"output:{k}": v for k, v in (outputs or {}).items()}
    execution = {
        "name": f"{PARENT}/metadataStores/default/executions/{task_id}",
        "schema_title": "system.DagExecution" if dag else "system.ContainerExecution",
        "state": "COMPLETE" if state == Task.SUCCEEDED else "FAILED",
        "metadata": metadata,
    }
    detail = aiplatform_v1.PipelineTaskDetail(
        task_id=task_id,
        parent_task_id=parent if task_id != 1 else 0,
        task_name=name,
        state=state,
        error={"code": 9, "message": error} if error else {},
    )
    if state != Task.NOT_TRIGGERED:
        detail.execution = aiplatform_v1.Execution(execution)
    if name == "train-model" and state == Task.SUCCEEDED:
        artifact = aiplatform_v1.Artifact(
            uri="gs://fraud-mlops-dev-pipelines/root/123/train-model/model",
            schema_title="system.Model",
        )
        detail.outputs = {
            "model": aiplatform_v1.PipelineTaskDetail.ArtifactList(artifacts=[artifact])
        }
    return detail


def _common(failed_at: str | None = None) -> list[aiplatform_v1.PipelineTaskDetail]:
    """The root DAG and the steps before the gate's branches; ``failed_at`` fails one."""
    root = _task(1, pipeline_job_id(RUN), Task.SUCCEEDED, dag=True)
    steps = [
        ("build-dataset", {}),
        ("train-model", {}),
        (
            "evaluate-model",
            {"auprc": 0.9132, "roc_auc": 0.9876, "metrics_json": json.dumps(METRICS)},
        ),
    ]
    tasks = [root]
    for i, (name, outputs) in enumerate(steps, start=2):
        if failed_at == name:
            tasks[0] = _task(
                1, pipeline_job_id(RUN), Task.FAILED, dag=True, error="The DAG failed."
            )
            tasks.append(_task(i, name, Task.FAILED, error=WORKER_ERROR))
            return tasks
        tasks.append(_task(i, name, Task.SUCCEEDED, outputs=outputs))
    return tasks


def _passed_tasks() -> list[aiplatform_v1.PipelineTaskDetail]:
    gate = {"passed": True, "reason": PASSED, "champion": ""}
    return [
        *_common(),
        _task(5, "gate", Task.SUCCEEDED, outputs=gate),
        _task(6, "condition-branches-1", Task.SUCCEEDED, dag=True),
        _task(7, "gate-passed", Task.SUCCEEDED, parent=6, dag=True),
        _task(8, "gate-rejected", Task.NOT_TRIGGERED, parent=6, dag=True),
        _task(9, "register-model", Task.SUCCEEDED, parent=7, outputs={"Output": "v0003"}),
        _task(10, "deploy-model", Task.SUCCEEDED, parent=7, outputs={"Output": "v0003"}),
        # The other branch's step, listed but never run: not a step of this run.
        _task(11, "keep-deployed-model", Task.NOT_TRIGGERED, parent=8),
    ]


def _rejected_tasks() -> list[aiplatform_v1.PipelineTaskDetail]:
    gate = {"passed": False, "reason": REJECTED, "champion": "v0001"}
    return [
        *_common(),
        _task(5, "gate", Task.SUCCEEDED, outputs=gate),
        _task(6, "condition-branches-1", Task.SUCCEEDED, dag=True),
        _task(7, "gate-passed", Task.NOT_TRIGGERED, parent=6, dag=True),
        _task(8, "gate-rejected", Task.SUCCEEDED, parent=6, dag=True),
        _task(9, "keep-deployed-model", Task.SUCCEEDED, parent=8, outputs={"Output": ""}),
    ]


def _job(
    template: bytes,
    state: int,
    tasks: list[aiplatform_v1.PipelineTaskDetail] | None = None,
    *,
    snapshot_id: str = SNAPSHOT,
    error: str = "",
) -> aiplatform_v1.PipelineJob:
    return aiplatform_v1.PipelineJob(
        name=JOB_NAME,
        display_name=RUN,
        state=state,
        pipeline_spec=yaml.safe_load(template),
        runtime_config={
            "gcs_output_directory": SECTION.pipeline_root,
            "parameter_values": {"config_json": "{}", "snapshot_id": snapshot_id, "run_name": RUN},
        },
        job_detail={"task_details": tasks or []},
        error={"code": 9, "message": error} if error else {},
    )


def _pipelines(create: Any, get: Any) -> RecordingClient:
    return RecordingClient(
        {"create_pipeline_job": create, "get_pipeline_job": get, "cancel_pipeline_job": None}
    )


# -- the request ---------------------------------------------------------------------------


@pytest.mark.emulators
def test_run_submits_the_exact_create_request_with_the_template_from_gcs(
    fake_gcs: FakeGcs, template: bytes, config: RuntimeConfig
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    fake_gcs.client.bucket(bucket).blob("templates/custom.yaml").upload_from_string(template)
    section = SECTION.model_copy(update={"template_uri": f"gs://{bucket}/templates/custom.yaml"})
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
    )

    result = _runner(config, pipelines, fake_gcs.client, section=section).run(
        snapshot_id=SNAPSHOT, run_name=RUN
    )

    assert pipelines.methods() == ["create_pipeline_job", "get_pipeline_job"]
    request = pipelines.calls[0].request
    assert isinstance(request, aiplatform_v1.CreatePipelineJobRequest)
    assert request.parent == PARENT
    assert request.pipeline_job_id == pipeline_job_id(RUN)
    job = request.pipeline_job
    assert job.display_name == RUN
    assert dict(job.labels) == {
        "app": "fraud-mlops",
        "trainer": "custom",
        "snapshot_id": "snap_0001_creditcard-csv",
        "run_name": "train-snap-0001-creditcard",
    }
    assert job.service_account == SECTION.service_account
    assert job.runtime_config.gcs_output_directory == SECTION.pipeline_root
    assert dict(job.runtime_config.parameter_values) == {
        "config_json": config.to_json(),
        "snapshot_id": SNAPSHOT,
        "run_name": RUN,
    }
    spec = json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(job).pipeline_spec)
    assert spec == yaml.safe_load(template)
    assert job.template_uri == ""  # a gs:// template goes as the spec itself
    assert pipelines.calls[1].request == {"name": JOB_NAME}
    assert result.model_version == "v0003"


@pytest.mark.emulators
def test_run_template_missing_in_gcs_raises_config_error_before_submitting(
    fake_gcs: FakeGcs, config: RuntimeConfig
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    section = SECTION.model_copy(update={"template_uri": f"gs://{bucket}/templates/none.yaml"})
    pipelines = _pipelines(None, None)

    with pytest.raises(ConfigError, match="does not exist; the stack compiles and uploads it"):
        _runner(config, pipelines, fake_gcs.client, section=section).run(
            snapshot_id=SNAPSHOT, run_name=RUN
        )
    assert pipelines.calls == []


def test_run_template_for_another_image_raises_config_error_before_submitting(
    tmp_path: Path, config: RuntimeConfig
) -> None:
    other = compile_pipeline(tmp_path / "other.yaml", image=IMAGE.replace("a" * 64, "b" * 64))
    storage, _, _ = _storage(other.read_bytes())
    pipelines = _pipelines(None, None)

    with pytest.raises(ConfigError, match="does not run the trainer image"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)
    assert pipelines.calls == []


def test_run_reads_the_template_object_the_config_names(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, bucket, blob = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
    )

    _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert storage.calls[0].args == ("fraud-mlops-dev-pipelines",)
    assert bucket.calls[0].args == ("templates/fraud_training_pipeline.yaml",)
    assert blob.methods() == ["download_as_bytes"]


def test_run_name_unsafe_raises_invalid_input_before_any_call(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(None, None)

    with pytest.raises(InvalidInputError, match="run name '../escape'"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name="../escape")
    assert pipelines.calls == [] and storage.calls == []


# -- idempotent submission --------------------------------------------------------------------


def test_run_job_already_exists_reattaches_and_waits_without_a_second_create(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        gexc.AlreadyExists("PipelineJob already exists"),
        [
            _job(template, State.PIPELINE_STATE_RUNNING),
            _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
        ],
    )
    clock = Clock()

    result = _runner(config, pipelines, storage, clock=clock).run(
        snapshot_id=SNAPSHOT, run_name=RUN
    )

    assert pipelines.methods() == ["create_pipeline_job", "get_pipeline_job", "get_pipeline_job"]
    assert [c.request for c in pipelines.calls[1:]] == [{"name": JOB_NAME}] * 2
    assert clock.slept == [5]
    assert result.model_version == "v0003"


def test_run_existing_job_failed_reports_its_failure_without_resubmitting(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    failed = _job(template, State.PIPELINE_STATE_FAILED, _common(failed_at="train-model"))
    pipelines = _pipelines(gexc.AlreadyExists("exists"), failed)

    with pytest.raises(PipelineFailedError) as caught:
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert pipelines.methods() == ["create_pipeline_job", "get_pipeline_job"]
    assert caught.value.failure.task == "train_model"


def test_run_existing_job_of_another_snapshot_raises_conflict(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    other = _job(template, State.PIPELINE_STATE_RUNNING, snapshot_id="snap_0002_other.csv")
    pipelines = _pipelines(gexc.AlreadyExists("exists"), other)

    with pytest.raises(ConflictError, match="on snapshot 'snap_0002_other.csv'.*new run name"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)
    assert pipelines.methods() == ["create_pipeline_job", "get_pipeline_job"]


def test_pipeline_job_id_is_valid_stable_and_distinct_per_exact_name() -> None:
    long_a, long_b = "r" * 120 + "a", "r" * 120 + "b"
    names = [
        "r1",
        "R1",
        "train-snap-0001",
        "train_snap.0001",
        "9-starts-with-a-digit",
        long_a,
        long_b,
    ]

    ids = [pipeline_job_id(name) for name in names]

    assert all(JOB_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(names)
    assert ids == [pipeline_job_id(name) for name in names]
    assert pipeline_job_id("train-snap-0001").startswith("fraud-training-train-snap-0001-")


def test_label_value_follows_vertex_label_rules() -> None:
    assert label_value("Snap_0001.Creditcard CSV") == "snap_0001-creditcard-csv"
    assert len(label_value("x" * 100)) == 63
    assert re.fullmatch(r"[a-z0-9_-]{0,63}", label_value("ÄÖ/..%" * 20))


# -- waiting ----------------------------------------------------------------------------------


def test_run_polls_every_poll_seconds_until_succeeded(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        [
            _job(template, State.PIPELINE_STATE_RUNNING),
            _job(template, State.PIPELINE_STATE_RUNNING),
            _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
        ],
    )
    clock = Clock()

    _runner(config, pipelines, storage, clock=clock).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert pipelines.methods() == ["create_pipeline_job"] + ["get_pipeline_job"] * 3
    assert clock.slept == [5, 5, 5]


def test_run_not_ending_in_time_cancels_the_job_and_raises_backend_unavailable(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING), _job(template, State.PIPELINE_STATE_RUNNING)
    )
    clock = Clock()

    with pytest.raises(BackendUnavailableError, match=rf"{JOB_NAME} did not end within 60 s"):
        _runner(config, pipelines, storage, clock=clock).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert sum(clock.slept) == 60
    assert pipelines.methods()[-1] == "cancel_pipeline_job"
    assert pipelines.calls[-1].request == {"name": JOB_NAME}
    assert pipelines.methods().count("cancel_pipeline_job") == 1


def test_run_timeout_whose_cancel_fails_still_raises_backend_unavailable_saying_so(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = RecordingClient(
        {
            "create_pipeline_job": _job(template, State.PIPELINE_STATE_PENDING),
            "get_pipeline_job": _job(template, State.PIPELINE_STATE_RUNNING),
            "cancel_pipeline_job": gexc.PermissionDenied("aiplatform.pipelineJobs.cancel"),
        }
    )

    with pytest.raises(BackendUnavailableError, match="could not be cancelled"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)


# -- the outcome --------------------------------------------------------------------------------


def test_run_gate_passed_reads_outputs_and_steps_from_task_details(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
    )

    result = _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    # The local runner's shape for the same outcome (tests/backends/local).
    assert result == PipelineResult(
        run_name=RUN,
        snapshot_id=SNAPSHOT,
        deployed=True,
        gate_reason=PASSED,
        metrics=METRICS,
        model_version="v0003",
        steps={
            step: "succeeded"
            for step in (
                "build_dataset",
                "train_model",
                "evaluate_model",
                "gate",
                "register_model",
                "deploy_model",
            )
        },
    )


def test_run_gate_rejected_reports_no_version_and_only_the_branch_that_ran(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, _rejected_tasks()),
    )

    result = _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert result.deployed is False
    assert result.model_version is None
    assert result.gate_reason == REJECTED
    assert result.metrics == METRICS
    assert result.steps == {
        "build_dataset": "succeeded",
        "train_model": "succeeded",
        "evaluate_model": "succeeded",
        "gate": "succeeded",
        "keep_deployed_model": "succeeded",
    }


def test_run_cached_steps_count_as_succeeded_with_their_outputs(
    template: bytes, config: RuntimeConfig
) -> None:
    tasks = _passed_tasks()
    evaluate = next(t for t in tasks if t.task_name == "evaluate-model")
    evaluate.state = Task.SKIPPED  # type: ignore[assignment]  # Vertex AI's cache hit
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, tasks),
    )

    result = _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert result.steps["evaluate_model"] == "succeeded"
    assert result.metrics == METRICS


def test_run_succeeded_without_recorded_outputs_raises_backend_unavailable(
    template: bytes, config: RuntimeConfig
) -> None:
    tasks = [t for t in _passed_tasks() if t.task_name != "gate"]
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_SUCCEEDED, tasks),
    )

    with pytest.raises(BackendUnavailableError, match=r"record no \['gate_reason'\]"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)


def test_run_failed_task_raises_pipeline_failed_naming_the_task_and_its_error(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(
            template,
            State.PIPELINE_STATE_FAILED,
            _common(failed_at="train-model"),
            error="The DAG failed because some tasks failed. The failed tasks are: [train-model].",
        ),
    )

    with pytest.raises(PipelineFailedError) as caught:
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    one_line = " ".join(WORKER_ERROR.split())
    assert caught.value.failure == RunFailure(
        task="train_model", error_class="PipelineFailedError", message=one_line[:300]
    )
    assert f"training run {RUN!r} failed at step 'train_model'" in str(caught.value)
    assert JOB_NAME in str(caught.value)


def test_run_failed_before_any_step_names_unknown_and_the_jobs_error(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_FAILED, error="Service account lacks actAs."),
    )

    with pytest.raises(PipelineFailedError) as caught:
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert caught.value.failure == RunFailure(
        task="unknown", error_class="PipelineFailedError", message="Service account lacks actAs."
    )


def test_run_cancelled_job_raises_pipeline_failed_naming_the_cancelled_step(
    template: bytes, config: RuntimeConfig
) -> None:
    tasks = _common()
    tasks.append(_task(5, "gate", Task.CANCELLED, error="Task was cancelled."))
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING),
        _job(template, State.PIPELINE_STATE_CANCELLED, tasks),
    )

    with pytest.raises(PipelineFailedError, match="was cancelled at step 'gate'") as caught:
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)
    assert caught.value.failure.message == "Task was cancelled."


# -- the call policy ------------------------------------------------------------------------------


def test_run_transient_errors_are_retried_within_the_deadline(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(
        [gexc.ServiceUnavailable("down"), _job(template, State.PIPELINE_STATE_PENDING)],
        [
            gexc.ServiceUnavailable("down"),
            _job(template, State.PIPELINE_STATE_SUCCEEDED, _passed_tasks()),
        ],
    )

    result = _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    assert pipelines.methods() == ["create_pipeline_job"] * 2 + ["get_pipeline_job"] * 2
    assert result.model_version == "v0003"


def test_run_service_down_past_the_deadline_raises_backend_unavailable(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(gexc.ServiceUnavailable("down"), None)

    with pytest.raises(BackendUnavailableError, match="gave up within the retry deadline"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)
    assert pipelines.methods().count("create_pipeline_job") > 1


def test_run_permission_denied_raises_config_error_without_retrying(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, _ = _storage(template)
    pipelines = _pipelines(gexc.PermissionDenied("aiplatform.pipelineJobs.create"), None)

    with pytest.raises(ConfigError, match="pipelineJobs.create"):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)
    assert pipelines.methods() == ["create_pipeline_job"]


def test_run_every_call_has_the_policy_timeout_and_retry(
    template: bytes, config: RuntimeConfig
) -> None:
    storage, _, blob = _storage(template)
    pipelines = _pipelines(
        _job(template, State.PIPELINE_STATE_PENDING), _job(template, State.PIPELINE_STATE_RUNNING)
    )

    with pytest.raises(BackendUnavailableError):
        _runner(config, pipelines, storage).run(snapshot_id=SNAPSHOT, run_name=RUN)

    calls = [*blob.calls, *pipelines.calls]
    assert {c.method for c in calls} == {
        "download_as_bytes",
        "create_pipeline_job",
        "get_pipeline_job",
        "cancel_pipeline_job",
    }
    for call in calls:
        assert call.kwargs["timeout"] == 30.0, call.method
        retry = call.kwargs["retry"]
        assert isinstance(retry, gretry.Retry) and retry.timeout == 2.0, call.method


# -- construction ---------------------------------------------------------------------------------


def test_from_config_uses_the_gcp_call_policy_and_creates_no_client(config: RuntimeConfig) -> None:
    runner = VertexPipelineRunner.from_config(SECTION, SimpleNamespace(config=config))

    assert runner.policy == CallPolicy.from_config(config.gcp_calls)
    assert runner.config is config
    assert runner._client is None and runner._storage is None


def test_pipeline_client_is_made_once_on_the_regional_endpoint(
    monkeypatch: pytest.MonkeyPatch, config: RuntimeConfig
) -> None:
    made: list[dict[str, Any]] = []

    def client(**kwargs: Any) -> object:
        made.append(kwargs)
        return object()

    monkeypatch.setattr(aiplatform_v1, "PipelineServiceClient", client)
    runner = VertexPipelineRunner(SECTION, config=config, policy=POLICY)

    first = runner._pipeline_client()

    assert runner._pipeline_client() is first
    assert made == [{"client_options": {"api_endpoint": "europe-west1-aiplatform.googleapis.com"}}]
