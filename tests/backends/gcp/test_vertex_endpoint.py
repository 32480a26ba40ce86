"""The Vertex AI endpoint at its client boundary (no emulator exists): a stateful fake
endpoint keeps the deployed models, the split and the etag, so deploy, promote and
rollback run in sequence; the tests assert the exact deploy, switch and undeploy
requests, the compare-and-swap, the alias and history moves, and predict's wire format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1

from app.backends import Backends
from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.vertex_endpoint import VertexModelEndpoint
from app.core.config import (
    CallPolicyConfig,
    RuntimeConfig,
    VertexEndpointConfig,
    VertexModelRegistryConfig,
)
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from app.core.records import ModelVersion
from app.core.schema import MODEL_FEATURES
from tests.support.recording import Call, RecordingClient

PROJECT, LOCATION = "fraud-mlops-dev", "europe-west1"
MODEL = f"projects/{PROJECT}/locations/{LOCATION}/models/fraud-model"
ENDPOINT = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/fraud-endpoint"
ADMIN = CallPolicy(timeout=30.0, deadline=60.0, initial=0.01, maximum=0.02)
SERVING = CallPolicy(timeout=0.5, deadline=0.3, initial=0.01, maximum=0.02)
WAIT = 1800.0


def _section(canary: int = 0) -> VertexEndpointConfig:
    return VertexEndpointConfig(
        project=PROJECT,
        location=LOCATION,
        endpoint_id="fraud-endpoint",
        canary_traffic_percent=canary,
        machine_type="n2-standard-4",
        min_replicas=1,
        max_replicas=3,
        service_account="serving@fraud-mlops-dev.iam.gserviceaccount.com",
    )


def _version(n: int, *, threshold: float = 0.5, framework: str = "lightgbm") -> ModelVersion:
    return ModelVersion(
        version=f"v{n:04d}",
        snapshot_id="snap",
        artifact_uri=f"gs://b/models/run-{n}/x/",
        threshold=threshold,
        metrics={"auprc": 0.6},
        params={"framework": framework},
        run_name=f"run-{n}",
    )


class FakeRegistry:
    def __init__(self, *versions: ModelVersion) -> None:
        self.versions = {v.version: v for v in versions}

    def get(self, version: str) -> ModelVersion:
        if version not in self.versions:
            raise NotFoundError(f"model version {version!r} is not registered")
        return self.versions[version]


class FakeEndpointService:
    """One Vertex endpoint: deployed models, a traffic split and an etag that moves on
    every change; ``update_endpoint`` refuses a stale etag as Vertex does (ABORTED)."""

    def __init__(self) -> None:
        self.deployed: list[aiplatform_v1.DeployedModel] = []
        self.split: dict[str, int] = {}
        self.etag = 1
        self.next_id = 100
        self.lro_timeouts: list[float] = []
        # Run just before the named method answers: another writer's change.
        self.hooks: dict[str, Callable[[], None]] = {}
        self.client = RecordingClient(
            {
                "get_endpoint": self._get,
                "deploy_model": self._deploy,
                "update_endpoint": self._update,
                "undeploy_model": self._undeploy,
            }
        )

    def _hook(self, method: str) -> None:
        hook = self.hooks.pop(method, None)
        if hook is not None:
            hook()

    def _operation(self, response: Any) -> Any:
        def result(timeout: float) -> Any:
            self.lro_timeouts.append(timeout)
            return response

        return SimpleNamespace(result=result)

    def _get(self, call: Call) -> aiplatform_v1.Endpoint:
        assert call.request == {"name": ENDPOINT}
        return aiplatform_v1.Endpoint(
            name=ENDPOINT,
            deployed_models=list(self.deployed),
            traffic_split=dict(self.split),
            etag=str(self.etag),
        )

    def add(self, version_id: int, percent: int | None = None) -> str:
        """Deploy ``version_id`` directly (as another writer or the stack would)."""
        deployed_id = str(self.next_id)
        self.next_id += 1
        self.deployed.append(
            aiplatform_v1.DeployedModel(
                id=deployed_id, model=f"{MODEL}@{version_id}", display_name=f"v{version_id:04d}"
            )
        )
        if percent is not None:
            self.split[deployed_id] = percent
        self.etag += 1
        return deployed_id

    def _deploy(self, call: Call) -> Any:
        self._hook("deploy_model")
        request: aiplatform_v1.DeployModelRequest = call.request
        deployed = aiplatform_v1.DeployedModel(request.deployed_model)
        deployed.id = str(self.next_id)
        self.next_id += 1
        self.deployed.append(deployed)
        if request.traffic_split:
            self.split = {
                (deployed.id if k == "0" else k): v for k, v in request.traffic_split.items()
            }
        self.etag += 1
        return self._operation(aiplatform_v1.DeployModelResponse(deployed_model=deployed))

    def _update(self, call: Call) -> aiplatform_v1.Endpoint:
        self._hook("update_endpoint")
        request: aiplatform_v1.UpdateEndpointRequest = call.request
        if request.endpoint.etag != str(self.etag):
            raise gexc.Aborted("etag mismatch")
        self.split = dict(request.endpoint.traffic_split)
        self.etag += 1
        return request.endpoint

    def _undeploy(self, call: Call) -> Any:
        request: aiplatform_v1.UndeployModelRequest = call.request
        self.deployed = [d for d in self.deployed if d.id != request.deployed_model_id]
        self.split.pop(request.deployed_model_id, None)
        self.etag += 1
        return self._operation(aiplatform_v1.UndeployModelResponse())

    def version_split(self) -> dict[str, int]:
        names = {d.id: d.display_name for d in self.deployed}
        return {names[i]: p for i, p in self.split.items() if p > 0}

    def id_of(self, version: str) -> str:
        return next(d.id for d in self.deployed if d.display_name == version)

    def requests(self, method: str) -> list[Any]:
        return [c.request for c in self.client.calls if c.method == method]


class FakeModelService:
    """Version labels and aliases, as the endpoint reads and writes them."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}
        self.aliases: dict[str, set[str]] = {}
        self.client = RecordingClient(
            {
                "get_model": self._get,
                "update_model": self._update,
                "merge_version_aliases": self._merge,
            }
        )

    def _get(self, call: Call) -> aiplatform_v1.Model:
        name = call.request["name"]
        return aiplatform_v1.Model(name=name, labels=self.labels.get(name, {"app": "fraud-mlops"}))

    def _update(self, call: Call) -> aiplatform_v1.Model:
        request: aiplatform_v1.UpdateModelRequest = call.request
        assert list(request.update_mask.paths) == ["labels"]
        self.labels[request.model.name] = dict(request.model.labels)
        return request.model

    def _merge(self, call: Call) -> aiplatform_v1.Model:
        name = call.request["name"]
        for alias in call.request["version_aliases"]:
            if alias.startswith("-"):
                self.aliases.get(name, set()).discard(alias[1:])
            else:
                assert not any(alias in held for held in self.aliases.values()), "alias in use"
                self.aliases.setdefault(name, set()).add(alias)
        return aiplatform_v1.Model(name=name)

    def holder(self, alias: str) -> str | None:
        return next((n for n, held in self.aliases.items() if alias in held), None)


class Rig:
    def __init__(self, *versions: ModelVersion, canary: int = 0) -> None:
        self.endpoints = FakeEndpointService()
        self.models = FakeModelService()
        self.predictions = RecordingClient()
        self.registry = FakeRegistry(*(versions or [_version(n) for n in (1, 2, 3)]))
        self.canary = canary

    def endpoint(self, canary: int | None = None) -> VertexModelEndpoint:
        return VertexModelEndpoint(
            _section(self.canary if canary is None else canary),
            model_name=MODEL,
            registry=self.registry,
            admin_policy=ADMIN,
            serving_policy=SERVING,
            endpoints=self.endpoints.client,
            predictions=self.predictions,
            models=self.models.client,
            deploy_wait_seconds=WAIT,
        )

    def clear(self) -> None:
        self.endpoints.client.calls.clear()
        self.models.client.calls.clear()


def _features(missing: str | None = None) -> dict[str, float | None]:
    features: dict[str, float | None] = {n: i + 0.25 for i, n in enumerate(MODEL_FEATURES)}
    if missing:
        features[missing] = None
    return features


def _answer(deployed_id: str, prediction: Any) -> Callable[[Call], Any]:
    def answer(_: Call) -> aiplatform_v1.PredictResponse:
        response = aiplatform_v1.PredictResponse(deployed_model_id=deployed_id)
        response.predictions.append(prediction)
        return response

    return answer


# -- deploy ----------------------------------------------------------------------------


def test_deploy_first_version_deploys_at_no_traffic_then_switches_it_to_100() -> None:
    rig = Rig()

    split = rig.endpoint(canary=10).deploy(_version(1), expected_champion=None)

    assert split == {"v0001": 100}
    assert rig.endpoints.client.methods() == [
        "get_endpoint",
        "deploy_model",
        "get_endpoint",
        "update_endpoint",
    ]
    (deploy,) = rig.endpoints.requests("deploy_model")
    assert isinstance(deploy, aiplatform_v1.DeployModelRequest)
    assert deploy.endpoint == ENDPOINT
    assert dict(deploy.traffic_split) == {}  # the split is left alone until the switch
    deployed = deploy.deployed_model
    assert (deployed.model, deployed.display_name) == (f"{MODEL}@1", "v0001")
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n2-standard-4"
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 3)
    assert deployed.service_account == "serving@fraud-mlops-dev.iam.gserviceaccount.com"
    (update,) = rig.endpoints.requests("update_endpoint")
    assert isinstance(update, aiplatform_v1.UpdateEndpointRequest)
    assert dict(update.endpoint.traffic_split) == {"100": 100}
    assert update.endpoint.etag == "2"  # the etag read after the deploy
    assert list(update.update_mask.paths) == ["traffic_split"]
    assert rig.models.holder("champion") == f"{MODEL}@1"
    assert rig.models.labels[f"{MODEL}@1"]["took_over_from"] == "none"
    assert rig.endpoints.lro_timeouts == [WAIT]


def test_deploy_canary_share_splits_90_10_and_the_champion_keeps_the_rest() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    split = endpoint.deploy(_version(2), expected_champion="v0001")

    assert split == {"v0001": 90, "v0002": 10}
    assert list(endpoint.traffic()) == ["v0001", "v0002"]  # champion first
    (update,) = rig.endpoints.requests("update_endpoint")
    assert dict(update.endpoint.traffic_split) == {"100": 90, "101": 10}
    assert endpoint.deployed() == _version(1)
    assert rig.models.holder("champion") == f"{MODEL}@1"  # a canary moves no alias
    assert "merge_version_aliases" not in rig.models.client.methods()


def test_deploy_third_version_undeploys_the_canary_it_replaces() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    canary_id = rig.endpoints.id_of("v0002")
    rig.clear()

    split = endpoint.deploy(_version(3), expected_champion="v0001")

    assert split == {"v0001": 90, "v0003": 10}
    (update,) = rig.endpoints.requests("update_endpoint")
    assert dict(update.endpoint.traffic_split) == {"100": 90, "102": 10}
    (undeploy,) = rig.endpoints.requests("undeploy_model")
    assert isinstance(undeploy, aiplatform_v1.UndeployModelRequest)
    assert (undeploy.endpoint, undeploy.deployed_model_id) == (ENDPOINT, canary_id)
    assert dict(undeploy.traffic_split) == {}  # it has no traffic; the split is not rewritten
    assert [d.display_name for d in rig.endpoints.deployed] == ["v0001", "v0003"]


def test_deploy_full_share_replaces_the_champion_and_moves_the_alias() -> None:
    rig = Rig(canary=0)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    split = endpoint.deploy(_version(2), expected_champion="v0001")

    assert split == {"v0002": 100}
    assert [d.display_name for d in rig.endpoints.deployed] == ["v0002"]
    assert [c.request for c in rig.models.client.calls if c.method == "merge_version_aliases"] == [
        {"name": f"{MODEL}@1", "version_aliases": ["-champion"]},
        {"name": f"{MODEL}@2", "version_aliases": ["champion"]},
    ]
    assert rig.models.labels[f"{MODEL}@2"] == {"app": "fraud-mlops", "took_over_from": "v0001"}


def test_deploy_version_already_serving_there_changes_nothing() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    rig.clear()

    # A retried step: its gate's expected champion may be stale, the split is as it wants.
    assert endpoint.deploy(_version(2), expected_champion=None) == {"v0001": 90, "v0002": 10}
    assert rig.endpoints.client.methods() == ["get_endpoint"]
    assert rig.models.client.calls == []


def test_deploy_stale_expected_champion_raises_conflict_and_deploys_nothing() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    with pytest.raises(ConflictError, match="champion is v0001, not nothing"):
        endpoint.deploy(_version(2), expected_champion=None)

    assert rig.endpoints.client.methods() == ["get_endpoint"]
    assert rig.endpoints.version_split() == {"v0001": 100}


def test_deploy_etag_moved_after_the_deploy_undeploys_it_and_raises_conflict() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    def another_change() -> None:
        rig.endpoints.etag += 1  # e.g. an operator's edit that left the split as it was

    rig.endpoints.hooks["update_endpoint"] = another_change

    with pytest.raises(ConflictError, match="changed before it could be switched"):
        endpoint.deploy(_version(2), expected_champion="v0001")

    assert rig.endpoints.client.methods() == [
        "get_endpoint",
        "deploy_model",
        "get_endpoint",
        "update_endpoint",  # once: a stale etag is not retried
        "undeploy_model",
    ]
    (deploy,) = rig.endpoints.requests("deploy_model")
    (undeploy,) = rig.endpoints.requests("undeploy_model")
    assert undeploy.deployed_model_id == "101" and deploy.deployed_model.display_name == "v0002"
    assert rig.endpoints.version_split() == {"v0001": 100}
    assert [d.display_name for d in rig.endpoints.deployed] == ["v0001"]
    assert rig.models.holder("champion") == f"{MODEL}@1"


def test_deploy_champion_changed_during_the_deploy_undeploys_it_and_raises_conflict() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    def another_run_promotes() -> None:
        old = rig.endpoints.id_of("v0001")
        new = rig.endpoints.add(3)
        rig.endpoints.split = {new: 100, old: 0}

    rig.endpoints.hooks["deploy_model"] = another_run_promotes

    with pytest.raises(ConflictError, match="changed while deploying"):
        endpoint.deploy(_version(2), expected_champion="v0001")

    assert "update_endpoint" not in rig.endpoints.client.methods()
    assert rig.endpoints.requests("undeploy_model")[0].deployed_model_id == "102"
    assert rig.endpoints.version_split() == {"v0003": 100}


def test_deploy_canary_of_the_other_framework_raises_config_error() -> None:
    rig = Rig(_version(1), _version(2, framework="automl"), canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    rig.clear()

    with pytest.raises(ConfigError, match="cannot split traffic between them"):
        endpoint.deploy(_version(2, framework="automl"), expected_champion="v0001")
    assert "deploy_model" not in rig.endpoints.client.methods()


def test_deploy_reuses_an_idle_deployment_a_died_attempt_left() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    idle = rig.endpoints.add(2)  # deployed, never switched to
    rig.clear()

    assert endpoint.deploy(_version(2), expected_champion="v0001") == {"v0002": 100}
    assert "deploy_model" not in rig.endpoints.client.methods()
    assert dict(rig.endpoints.requests("update_endpoint")[0].endpoint.traffic_split) == {idle: 100}


# -- promote and rollback --------------------------------------------------------------


def test_promote_gives_the_canary_all_traffic_and_moves_the_alias() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    rig.clear()

    assert endpoint.promote() == {"v0002": 100}

    (update,) = rig.endpoints.requests("update_endpoint")
    assert dict(update.endpoint.traffic_split) == {"101": 100}
    assert update.endpoint.etag == str(rig.endpoints.etag - 2)  # read before; then switch, undeploy
    assert rig.endpoints.requests("undeploy_model")[0].deployed_model_id == "100"
    assert rig.models.holder("champion") == f"{MODEL}@2"
    assert rig.models.labels[f"{MODEL}@2"]["took_over_from"] == "v0001"
    assert endpoint.deployed() == _version(2)


def test_promote_without_a_canary_raises_conflict() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)

    with pytest.raises(ConflictError, match="no canary to promote; v0001 has all traffic"):
        endpoint.promote()


def test_rollback_with_a_canary_restores_the_champion_and_undeploys_the_canary() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    rig.clear()

    assert endpoint.rollback() == {"v0001": 100}

    assert dict(rig.endpoints.requests("update_endpoint")[0].endpoint.traffic_split) == {"100": 100}
    assert rig.endpoints.requests("undeploy_model")[0].deployed_model_id == "101"
    assert rig.models.holder("champion") == f"{MODEL}@1"


def test_rollback_without_a_canary_redeploys_the_version_the_champion_replaced() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    endpoint.deploy(_version(3), expected_champion="v0002")
    rig.clear()

    assert endpoint.rollback() == {"v0002": 100}
    (deploy,) = rig.endpoints.requests("deploy_model")
    assert deploy.deployed_model.model == f"{MODEL}@2"
    assert [d.display_name for d in rig.endpoints.deployed] == ["v0002"]
    assert rig.models.holder("champion") == f"{MODEL}@2"

    # A second rollback walks back again: the history is the champion's own label.
    assert endpoint.rollback() == {"v0001": 100}
    assert rig.models.holder("champion") == f"{MODEL}@1"


def test_rollback_of_the_first_version_raises_conflict() -> None:
    rig = Rig()
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)

    with pytest.raises(ConflictError, match="v0001 was the first version deployed"):
        endpoint.rollback()
    with pytest.raises(ConflictError, match="nothing is deployed"):
        Rig().endpoint().rollback()


def test_traffic_and_deployed_with_nothing_deployed_are_empty() -> None:
    endpoint = Rig().endpoint()

    assert endpoint.traffic() == {}
    assert endpoint.deployed() is None


def test_every_admin_call_passes_the_timeout_and_a_retry() -> None:
    rig = Rig(canary=10)
    endpoint = rig.endpoint()
    endpoint.deploy(_version(1), expected_champion=None)
    endpoint.deploy(_version(2), expected_champion="v0001")
    endpoint.promote()
    endpoint.rollback()

    calls = rig.endpoints.client.calls + rig.models.client.calls
    assert {c.method for c in calls} >= {
        "get_endpoint",
        "deploy_model",
        "update_endpoint",
        "undeploy_model",
        "get_model",
        "update_model",
        "merge_version_aliases",
    }
    assert all(c.kwargs["timeout"] == 30.0 and c.kwargs["retry"] for c in calls)
    assert rig.endpoints.lro_timeouts and set(rig.endpoints.lro_timeouts) == {WAIT}


def test_deploy_transient_read_error_is_retried_within_the_deadline() -> None:
    rig = Rig()
    get = rig.endpoints.client.answers["get_endpoint"]
    rig.endpoints.client.answers["get_endpoint"] = [gexc.ServiceUnavailable("blip"), get]

    assert rig.endpoint().deploy(_version(1), expected_champion=None) == {"v0001": 100}
    assert rig.endpoints.client.methods()[:2] == ["get_endpoint", "get_endpoint"]


# -- predict ----------------------------------------------------------------------------


def _serving(rig: Rig, *versions: int) -> VertexModelEndpoint:
    endpoint = rig.endpoint(canary=10)
    expected = None
    for n in versions:
        endpoint.deploy(rig.registry.get(f"v{n:04d}"), expected_champion=expected)
        expected = expected or f"v{n:04d}"
    return endpoint


def test_predict_lightgbm_sends_the_features_in_model_order_with_null_for_missing() -> None:
    rig = Rig(_version(1, threshold=0.37))
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = _answer("100", 0.81)
    features = _features(missing="amount")

    prediction = endpoint.predict(dict(reversed(features.items())), routing_key="card")

    (call,) = rig.predictions.calls
    assert isinstance(call.request, aiplatform_v1.PredictRequest)
    assert call.request.endpoint == ENDPOINT
    (instance,) = call.request.instances
    assert list(instance) == [features[n] for n in MODEL_FEATURES]
    assert list(instance)[MODEL_FEATURES.index("amount")] is None
    assert (call.kwargs["timeout"], bool(call.kwargs["retry"])) == (0.5, True)
    assert (prediction.probability, prediction.threshold, prediction.model_version) == (
        0.81,
        0.37,
        "v0001",
    )


def test_predict_automl_sends_named_strings_and_reads_the_fraud_class_score() -> None:
    rig = Rig(_version(1, threshold=0.2, framework="automl"))
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = _answer(
        "100", {"classes": ["1", "0"], "scores": [0.3, 0.7]}
    )
    features = _features(missing=MODEL_FEATURES[0])

    prediction = endpoint.predict(features, routing_key="card")

    (instance,) = rig.predictions.calls[0].request.instances
    sent = dict(instance)
    assert set(sent) == set(MODEL_FEATURES)
    for name in MODEL_FEATURES:
        value = features[name]
        assert sent[name] == (None if value is None else repr(value))
    assert (prediction.probability, prediction.threshold) == (0.3, 0.2)


def test_predict_during_a_canary_names_the_version_that_answered() -> None:
    rig = Rig(_version(1, threshold=0.3), _version(2, threshold=0.6))
    endpoint = _serving(rig, 1, 2)
    rig.predictions.answers["predict"] = _answer(rig.endpoints.id_of("v0002"), 0.5)

    prediction = endpoint.predict(_features(), routing_key="card")

    assert (prediction.model_version, prediction.threshold) == ("v0002", 0.6)
    assert not prediction.is_fraud


def test_predict_answer_from_an_unknown_deployed_model_refreshes_the_view() -> None:
    rig = Rig(_version(1), _version(2, threshold=0.9))
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = _answer("100", 0.1)
    endpoint.predict(_features(), routing_key="card")  # the view is read and kept
    # Another process deploys v0002 at 100% meanwhile.
    rig.endpoint().deploy(_version(2, threshold=0.9), expected_champion="v0001")
    rig.predictions.answers["predict"] = _answer(rig.endpoints.id_of("v0002"), 0.95)
    reads = rig.endpoints.client.methods().count("get_endpoint")

    prediction = endpoint.predict(_features(), routing_key="card")

    assert (prediction.model_version, prediction.threshold) == ("v0002", 0.9)
    assert rig.endpoints.client.methods().count("get_endpoint") == reads + 1


def test_predict_nothing_deployed_raises_backend_unavailable() -> None:
    rig = Rig()
    rig.predictions.answers["predict"] = _answer("100", 0.1)

    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        rig.endpoint().predict(_features(), routing_key="card")
    assert rig.predictions.calls == []


def test_predict_service_unavailable_beyond_the_deadline_raises_backend_unavailable() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = gexc.ServiceUnavailable("503 endpoint overloaded")

    with pytest.raises(BackendUnavailableError) as raised:
        endpoint.predict(_features(), routing_key="card")

    assert raised.value.http_status == 503
    assert len(rig.predictions.calls) > 1  # retried until the serving deadline


def test_predict_transient_error_is_retried_within_the_deadline() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = [gexc.ServiceUnavailable("blip"), _answer("100", 0.4)]

    assert endpoint.predict(_features(), routing_key="card").probability == 0.4
    assert len(rig.predictions.calls) == 2


def test_predict_deadline_exceeded_raises_backend_unavailable() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = gexc.DeadlineExceeded("too slow")

    with pytest.raises(BackendUnavailableError):
        endpoint.predict(_features(), routing_key="card")


def test_predict_bad_request_raises_invalid_input() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = gexc.BadRequest("instances[0][3] is not a number")

    with pytest.raises(InvalidInputError, match=r"instances\[0\]\[3\]"):
        endpoint.predict(_features(), routing_key="card")
    assert len(rig.predictions.calls) == 1  # a bad request is not retried


def test_predict_missing_feature_raises_invalid_input_before_any_call() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    features = _features()
    del features[MODEL_FEATURES[0]]

    with pytest.raises(InvalidInputError, match="missing feature"):
        endpoint.predict(features, routing_key="card")
    assert rig.predictions.calls == []


def test_predict_endpoint_gone_raises_backend_unavailable_not_not_found() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = gexc.NotFound("endpoint not found")

    with pytest.raises(BackendUnavailableError, match="endpoint not found"):
        endpoint.predict(_features(), routing_key="card")


def test_predict_answer_without_a_score_raises_backend_unavailable() -> None:
    rig = Rig()
    endpoint = _serving(rig, 1)
    rig.predictions.answers["predict"] = _answer("100", "not a number")

    with pytest.raises(BackendUnavailableError, match="not a lightgbm prediction"):
        endpoint.predict(_features(), routing_key="card")


# -- composition ---------------------------------------------------------------------------


def test_from_config_serves_the_registry_sections_model_with_both_policies(
    tmp_path: Path,
) -> None:
    registry = VertexModelRegistryConfig(
        project=PROJECT,
        location=LOCATION,
        model_id="fraud-model",
        artifact_root="gs://artifacts/models",
        serving_image="europe-west1-docker.pkg.dev/p/r/serving@sha256:" + "b" * 64,
    )
    admin = CallPolicyConfig(timeout_seconds=3.0, deadline_seconds=9.0)
    cfg = RuntimeConfig.local(tmp_path).model_copy(
        update={"registry": registry, "endpoint": _section(), "gcp_calls": admin}
    )

    endpoint = VertexModelEndpoint.from_config(_section(), Backends(cfg))

    assert endpoint.model_name == MODEL
    assert endpoint.endpoint_name == ENDPOINT
    assert endpoint.admin_policy == CallPolicy.from_config(admin)
    assert endpoint.serving_policy == CallPolicy.from_config(cfg.serving_calls)


def test_from_config_with_a_local_registry_raises_config_error(tmp_path: Path) -> None:
    cfg = RuntimeConfig.local(tmp_path)

    with pytest.raises(ConfigError, match="vertex registry"):
        VertexModelEndpoint.from_config(_section(), Backends(cfg))


def test_warm_reads_the_serving_view_so_the_first_predict_reads_nothing_more() -> None:
    rig = Rig(_version(1, threshold=0.37))
    _serving(rig, 1)
    endpoint = rig.endpoint()
    rig.predictions.answers["predict"] = _answer("100", 0.81)

    endpoint.warm()
    reads = rig.endpoints.client.methods().count("get_endpoint")
    prediction = endpoint.predict(_features(), routing_key="card")

    assert reads >= 1
    assert rig.endpoints.client.methods().count("get_endpoint") == reads
    assert prediction.model_version == "v0001"


def test_warm_nothing_deployed_raises_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        Rig().endpoint().warm()
