"""The model endpoint on a Vertex AI Endpoint: the champion and, while one is tried, a
canary, each a DeployedModel of a Model Registry version on machines of its own.

Every change of the split is a compare-and-swap on the endpoint's ``etag``: the split
is read, a new version is deployed beside it at 0% traffic (the split untouched), and
only then is the traffic switched with ``update_endpoint`` carrying the etag read after
the deploy. If anything changed the split meanwhile, Vertex refuses the switch and what
this call deployed is undeployed again: two runs can never both promote. After a switch
the endpoint holds exactly the versions of its split; anything else is undeployed.

The live version carries the Model Registry alias ``champion``. Which version a
champion replaced (what ``rollback`` returns to when no canary serves) is kept as the
label ``took_over_from`` on the champion's own version, written when it becomes
champion by a deploy or a promote (before the switch, so it is never missing once the
version is live). Like the local endpoint's history, it survives any number of
processes and is not moved by a rollback, so rolling back twice walks back twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from google.api_core import exceptions as gexc

from app.backends.gcp.calls import CallPolicy, is_transient, seam, vertex_client_options
from app.backends.gcp.vertex_registry import (
    FRAMEWORK_AUTOML,
    FRAMEWORK_LIGHTGBM,
    version_id_of,
    version_name,
)
from app.core.config import VertexEndpointConfig, VertexModelRegistryConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.features import feature_row
from app.core.ports import ModelRegistry, Services
from app.core.records import ModelVersion, Prediction
from app.core.schema import MODEL_FEATURES

log = logging.getLogger("fraud_mlops.backends.vertex_endpoint")

CHAMPION_ALIAS = "champion"
TOOK_OVER_FROM = "took_over_from"
_NONE = "none"  # the label's value for a champion that replaced nothing
_AT_VERSION = re.compile(r"@([0-9]+)$")
# The etag moved (another change came first): the same request can never succeed.
_STALE = (gexc.Aborted, gexc.FailedPrecondition, gexc.Conflict, gexc.PreconditionFailed)


@dataclass(frozen=True)
class _Live:
    """The endpoint as one read saw it."""

    etag: str = ""
    # deployed model id -> version name, for every deployed model (serving or idle)
    versions: dict[str, str] = field(default_factory=dict)
    # deployed model id -> percent, as the endpoint's traffic_split says
    split: dict[str, int] = field(default_factory=dict)

    def serving(self) -> list[tuple[str, int]]:
        """(deployed id, percent) with traffic, champion first: the larger share; on a
        tie the older version (a canary is the newer one)."""
        live = [(i, p) for i, p in self.split.items() if p > 0 and i in self.versions]
        return sorted(live, key=lambda item: (-item[1], int(version_id_of(self.versions[item[0]]))))

    def shares(self) -> dict[str, int]:
        return {self.versions[i]: p for i, p in self.serving()}

    @property
    def champion(self) -> str | None:
        serving = self.serving()
        return self.versions[serving[0][0]] if serving else None

    @property
    def canary(self) -> str | None:
        serving = self.serving()
        return self.versions[serving[1][0]] if len(serving) > 1 else None

    def id_of(self, version: str) -> str:
        return next(i for i, p in self.serving() if self.versions[i] == version)

    def idle(self, version: str) -> str | None:
        """A deployment of ``version`` without traffic (a died attempt's), to reuse."""
        return next(
            (i for i, v in self.versions.items() if v == version and self.split.get(i, 0) == 0),
            None,
        )


@dataclass
class _ServingView:
    """What predict needs, cached: deployed model id -> its version's record."""

    by_id: dict[str, ModelVersion]
    serving: list[ModelVersion]
    fetched_at: float


class VertexModelEndpoint:
    def __init__(
        self,
        section: VertexEndpointConfig,
        *,
        model_name: str,
        registry: ModelRegistry,
        admin_policy: CallPolicy,
        serving_policy: CallPolicy,
        endpoints: Any = None,
        predictions: Any = None,
        models: Any = None,
        deploy_wait_seconds: float = 1800.0,
        view_ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self.model_name = model_name  # projects/…/models/{model_id}
        self.registry = registry
        self.admin_policy = admin_policy
        self.serving_policy = serving_policy
        self._endpoints = endpoints
        self._predictions = predictions
        self._models = models
        # A deploy takes minutes (machines start, the container loads), far longer than a
        # call's retry deadline.
        self.deploy_wait = max(admin_policy.deadline, deploy_wait_seconds)
        self.view_ttl = view_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._view: _ServingView | None = None
        self._records: dict[str, ModelVersion] = {}
        self.endpoint_name = (
            f"projects/{section.project}/locations/{section.location}/endpoints/"
            f"{section.endpoint_id}"
        )

    @classmethod
    def from_config(cls, section: VertexEndpointConfig, backends: Services) -> Self:
        cfg = backends.config
        registry = cfg.registry
        if not isinstance(registry, VertexModelRegistryConfig):
            raise ConfigError("the vertex endpoint serves versions of the vertex registry only")
        return cls(
            section,
            model_name=(
                f"projects/{registry.project}/locations/{registry.location}/models/"
                f"{registry.model_id}"
            ),
            registry=backends.registry,
            admin_policy=CallPolicy.from_config(cfg.gcp_calls),
            serving_policy=CallPolicy.from_config(cfg.serving_calls),
        )

    # -- clients, made once per instance -------------------------------------------

    def _client(self, attribute: str, kind: str) -> Any:
        with self._lock:
            client = getattr(self, attribute)
            if client is None:
                from google.cloud import aiplatform_v1

                # Vertex AI is regional: every service answers on the region's endpoint.
                client = getattr(aiplatform_v1, kind)(
                    client_options=vertex_client_options(self.section.location)
                )
                setattr(self, attribute, client)
            return client

    def _endpoint_client(self) -> Any:
        return self._client("_endpoints", "EndpointServiceClient")

    def _prediction_client(self) -> Any:
        return self._client("_predictions", "PredictionServiceClient")

    def _model_client(self) -> Any:
        return self._client("_models", "ModelServiceClient")

    # -- reading the split -------------------------------------------------------------

    def _read(self, policy: CallPolicy | None = None) -> _Live:
        policy = policy or self.admin_policy
        with seam(f"reading {self.endpoint_name}"):
            endpoint = self._endpoint_client().get_endpoint(
                request={"name": self.endpoint_name}, timeout=policy.timeout, retry=policy.retry()
            )
        versions = {}
        for deployed in endpoint.deployed_models:
            name = _deployed_version(deployed)
            if name is not None:
                versions[str(deployed.id)] = name
        return _Live(
            etag=str(endpoint.etag),
            versions=versions,
            split={str(k): int(v) for k, v in dict(endpoint.traffic_split).items()},
        )

    def traffic(self) -> dict[str, int]:
        return self._read().shares()

    def deployed(self) -> ModelVersion | None:
        champion = self._read().champion
        return None if champion is None else self._registered(champion)

    # -- changing the split ------------------------------------------------------------

    def deploy(self, version: ModelVersion, *, expected_champion: str | None) -> dict[str, int]:
        """Put ``version`` in at the canary share, the champion keeping the rest; see
        :meth:`app.core.ports.ModelEndpoint.deploy`. The old split stays unless the
        switch succeeds."""
        registered = self._registered(version.version)
        name = registered.version
        share = self.section.canary_traffic_percent
        live = self._read()
        champion = live.champion
        full = champion is None or share in (0, 100)
        # Already serving where this deploy would put it: a retried step succeeds.
        already = live.shares() == {name: 100} if full else name in (champion, live.canary)
        if already:
            return live.shares()
        if champion != expected_champion:
            raise ConflictError(
                f"the endpoint's champion is {champion or 'nothing'}, not "
                f"{expected_champion or 'nothing'} as its gate saw: another change "
                f"came first, so {name} is not deployed"
            )
        if not full and champion is not None:
            self._check_same_framework(self._registered(champion), registered)
        if full and name != champion:
            self._record_took_over(name, champion)
        if name in (live.champion, live.canary):
            # Serving already (the champion, or the canary about to take all traffic).
            deployed_id, made = live.id_of(name), False
        else:
            deployed_id, made = self._deploy_idle(registered, live)
        if full:
            target = {deployed_id: 100}
        else:
            assert champion is not None
            target = {live.id_of(champion): 100 - share, deployed_id: share}
        return self._switch(target, live, deployed=deployed_id if made else None, fresh=made)

    def promote(self) -> dict[str, int]:
        live = self._read()
        champion, canary = live.champion, live.canary
        if canary is None:
            held = f"; {champion} has all traffic" if champion else ""
            raise ConflictError(f"no canary to promote{held}")
        self._record_took_over(canary, champion)
        return self._switch({live.id_of(canary): 100}, live, deployed=None, fresh=False)

    def rollback(self) -> dict[str, int]:
        live = self._read()
        champion, canary = live.champion, live.canary
        if champion is None:
            raise ConflictError("nothing is deployed: nothing to roll back")
        if canary is not None:
            return self._switch({live.id_of(champion): 100}, live, deployed=None, fresh=False)
        previous = self._took_over_from(champion)
        if previous is None:
            raise ConflictError(
                f"{champion} was the first version deployed: nothing to roll back to"
            )
        deployed_id, made = self._deploy_idle(self._registered(previous), live)
        return self._switch(
            {deployed_id: 100}, live, deployed=deployed_id if made else None, fresh=made
        )

    def _check_same_framework(self, champion: ModelVersion, canary: ModelVersion) -> None:
        # Vertex splits traffic per request and the two containers take different
        # instances: a mixed split would send half the requests in the wrong shape.
        ours, theirs = _framework(canary), _framework(champion)
        if ours != theirs:
            raise ConfigError(
                f"{canary.version} is a {ours} model and the champion {champion.version} a "
                f"{theirs} one: Vertex cannot split traffic between them; deploy it with "
                "canary_traffic_percent 0 (all traffic at once)"
            )

    def _deploy_idle(self, version: ModelVersion, live: _Live) -> tuple[str, bool]:
        """``version`` deployed without traffic: its deployed model id, and whether this
        call deployed it (an idle one a died attempt left is reused)."""
        idle = live.idle(version.version)
        if idle is not None:
            return idle, False
        from google.cloud import aiplatform_v1

        section = self.section
        request = aiplatform_v1.DeployModelRequest(
            endpoint=self.endpoint_name,
            deployed_model=aiplatform_v1.DeployedModel(
                model=f"{self.model_name}@{version_id_of(version.version)}",
                display_name=version.version,
                dedicated_resources=aiplatform_v1.DedicatedResources(
                    machine_spec=aiplatform_v1.MachineSpec(machine_type=section.machine_type),
                    min_replica_count=section.min_replicas,
                    max_replica_count=section.max_replicas,
                ),
                service_account=section.service_account or "",
            ),
            # No traffic_split: the endpoint's split is left exactly as it is (writing
            # back the one read earlier could undo a change made since). The new model
            # serves nothing until the switch.
        )
        policy = self.admin_policy
        with seam(f"deploying {version.version} to {self.endpoint_name}"):
            operation = self._endpoint_client().deploy_model(
                request=request, timeout=policy.timeout, retry=policy.retry()
            )
            response = operation.result(timeout=self.deploy_wait)
        return str(response.deployed_model.id), True

    def _switch(
        self, target: dict[str, int], seen: _Live, *, deployed: str | None, fresh: bool
    ) -> dict[str, int]:
        """Make ``target`` the split if it is still ``seen``'s; else undo ``deployed``
        (what this call deployed) and raise ConflictError."""
        current = seen
        if fresh:
            # The deploy moved the etag: read it again, and check nobody else moved the split.
            current = self._read()
            if current.shares() != seen.shares():
                self._undo(deployed)
                raise ConflictError(
                    f"the traffic split changed while deploying (now {current.shares() or 'empty'}"
                    f", was {seen.shares() or 'empty'}); nothing was switched"
                )
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        request = aiplatform_v1.UpdateEndpointRequest(
            endpoint=aiplatform_v1.Endpoint(
                name=self.endpoint_name, traffic_split=target, etag=current.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
        )
        policy = self.admin_policy
        try:
            with seam(f"switching the traffic of {self.endpoint_name}"):
                try:
                    self._endpoint_client().update_endpoint(
                        request=request,
                        timeout=policy.timeout,
                        # A stale etag stays stale: retrying it would only wait out the deadline.
                        retry=policy.retry(_retryable_switch),
                    )
                except _STALE as exc:
                    raise ConflictError(
                        "the traffic split changed before it could be switched; try again"
                    ) from exc
        except ConflictError:
            self._undo(deployed)
            raise
        made = _Live(etag="", versions=current.versions, split=target)
        self._tidy(current, target)
        self._move_alias(seen.champion, made.champion)
        with self._lock:
            self._view = None  # predict reads the new split at once in this process
        return made.shares()

    def _undo(self, deployed: str | None) -> None:
        if deployed is None:
            return
        try:
            self._undeploy(deployed)
        except FraudMlopsError as exc:
            log.warning("could not undeploy %s after a failed switch: %s", deployed, exc)

    def _tidy(self, current: _Live, target: Mapping[str, int]) -> None:
        """Undeploy what the new split leaves without traffic. The split is already made,
        so a failure here is logged, not raised: the next change undeploys it again."""
        for deployed_id in current.versions:
            if deployed_id in target:
                continue
            try:
                self._undeploy(deployed_id)
            except FraudMlopsError as exc:
                log.warning("could not undeploy %s: %s", deployed_id, exc)

    def _undeploy(self, deployed_id: str) -> None:
        from google.cloud import aiplatform_v1

        # No traffic_split: the model has none, and the split is not written from here.
        request = aiplatform_v1.UndeployModelRequest(
            endpoint=self.endpoint_name, deployed_model_id=deployed_id
        )
        policy = self.admin_policy
        try:
            with seam(f"undeploying {deployed_id} from {self.endpoint_name}"):
                operation = self._endpoint_client().undeploy_model(
                    request=request, timeout=policy.timeout, retry=policy.retry()
                )
                operation.result(timeout=self.deploy_wait)
        except NotFoundError:
            pass  # already gone

    # -- the registry's side: alias and history -----------------------------------------

    def _version_resource(self, version: str) -> str:
        return f"{self.model_name}@{version_id_of(version)}"

    def _get_model(self, version: str) -> Any:
        name = self._version_resource(version)
        policy = self.admin_policy
        with seam(f"reading {name}"):
            return self._model_client().get_model(
                request={"name": name}, timeout=policy.timeout, retry=policy.retry()
            )

    def _took_over_from(self, champion: str) -> str | None:
        value = dict(self._get_model(champion).labels).get(TOOK_OVER_FROM)
        return None if value in (None, "", _NONE) else str(value)

    def _record_took_over(self, version: str, previous: str | None) -> None:
        """Label ``version`` with the champion it is about to replace."""
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        # An update with the labels mask replaces them all: read, change one, write back.
        labels = dict(self._get_model(version).labels)
        labels[TOOK_OVER_FROM] = previous or _NONE
        name = self._version_resource(version)
        request = aiplatform_v1.UpdateModelRequest(
            model=aiplatform_v1.Model(name=name, labels=labels),
            update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
        )
        policy = self.admin_policy
        with seam(f"recording what {version} replaces"):
            self._model_client().update_model(
                request=request, timeout=policy.timeout, retry=policy.retry()
            )

    def _move_alias(self, old: str | None, new: str | None) -> None:
        """``champion`` to the new champion. For people and tools (the split, not the
        alias, decides what serves), so a failure is logged, not raised."""
        if old == new or new is None:
            return
        policy = self.admin_policy
        changes = ([(old, f"-{CHAMPION_ALIAS}")] if old else []) + [(new, CHAMPION_ALIAS)]
        try:
            for version, alias in changes:
                name = self._version_resource(version)
                with seam(f"setting alias {alias} on {name}"):
                    self._model_client().merge_version_aliases(
                        request={"name": name, "version_aliases": [alias]},
                        timeout=policy.timeout,
                        retry=policy.retry(),
                    )
        except FraudMlopsError as exc:
            log.warning("could not move the %s alias to %s: %s", CHAMPION_ALIAS, new, exc)

    def _registered(self, name: str) -> ModelVersion:
        cached = self._records.get(name)
        if cached is not None:
            return cached
        try:
            version = self.registry.get(name)
        except NotFoundError as exc:
            # Not the caller's 404: the endpoint and its registry disagree.
            raise BackendUnavailableError(
                f"the endpoint serves {name}, which the registry does not hold"
            ) from exc
        # A registered version's record never changes: safe to keep.
        self._records[name] = version
        return version

    # -- scoring -------------------------------------------------------------------------

    def predict(self, features: Mapping[str, float | None], *, routing_key: str) -> Prediction:
        """Score on the endpoint; the prediction names the version that answered.

        Vertex splits the traffic itself, per request, not per card: during a canary
        one card's requests may be scored by either version, so ``routing_key`` is
        not used here (the local endpoint routes by it). Each answer names its
        deployed model, and it gets that version's threshold.
        """
        row = feature_row(features)  # the same validation as the local endpoint's
        values = [None if v != v else float(v) for v in row[0].tolist()]
        view = self._serving_view()
        if not view.serving:
            raise BackendUnavailableError("no model is deployed")
        framework = _framework(view.serving[0])
        try:
            response = self._send(_instance(values, framework))
        except InvalidInputError:
            # Refused: perhaps another process switched to a model of the other framework
            # since this view was read. Only then is the same request worth sending again.
            view = self._serving_view(refresh=True)
            if not view.serving or _framework(view.serving[0]) == framework:
                raise
            response = self._send(_instance(values, _framework(view.serving[0])))
        deployed_id = str(response.deployed_model_id)
        version = view.by_id.get(deployed_id)
        if version is None:
            # Deployed since the view was read: read it again.
            version = self._serving_view(refresh=True).by_id.get(deployed_id)
        if version is None:
            raise BackendUnavailableError(
                f"the endpoint answered from deployed model {deployed_id!r}, which it does not list"
            )
        probability = _probability(response.predictions, _framework(version))
        return Prediction(
            probability=probability, threshold=version.threshold, model_version=version.version
        )

    def warm(self) -> None:
        """Make the prediction client and read the serving versions now (the first
        request would); BackendUnavailableError when nothing is deployed."""
        self._prediction_client()
        if not self._serving_view(refresh=True).serving:
            raise BackendUnavailableError("no model is deployed")

    def _send(self, instance: Any) -> Any:
        from google.cloud import aiplatform_v1

        request = aiplatform_v1.PredictRequest(endpoint=self.endpoint_name)
        # proto-plus takes a Value only by append (not in the constructor).
        request.instances.append(instance)
        policy = self.serving_policy
        try:
            with seam("scoring on the endpoint"):
                return self._prediction_client().predict(
                    request=request, timeout=policy.timeout, retry=policy.retry()
                )
        except NotFoundError as exc:
            # The endpoint itself is missing: the service cannot answer, not the caller's 404.
            raise BackendUnavailableError(str(exc)) from exc

    def _serving_view(self, *, refresh: bool = False) -> _ServingView:
        now = self._clock()
        with self._lock:
            view = self._view
        if view is not None and not refresh and now - view.fetched_at < self.view_ttl:
            return view
        live = self._read(self.serving_policy)
        by_id = {i: self._registered(name) for i, name in live.versions.items()}
        serving = [by_id[i] for i, _ in live.serving()]
        view = _ServingView(by_id=by_id, serving=serving, fetched_at=now)
        with self._lock:
            self._view = view
        return view


def _retryable_switch(exc: BaseException) -> bool:
    return is_transient(exc) and not isinstance(exc, _STALE)


def _deployed_version(deployed: Any) -> str | None:
    """The version name a DeployedModel serves: its model's ``@version``, else its name."""
    if getattr(deployed, "model_version_id", ""):
        return version_name(deployed.model_version_id)
    match = _AT_VERSION.search(str(deployed.model))
    if match is not None:
        return version_name(match.group(1))
    display = str(deployed.display_name)
    try:
        version_id_of(display)
    except NotFoundError:
        return None  # not one of this project's versions
    return display


def _framework(version: ModelVersion) -> str:
    return str(version.params.get("framework") or FRAMEWORK_LIGHTGBM)


def _instance(values: list[float | None], framework: str) -> Any:
    """One instance in the shape the version's container takes (see the design's
    wire format): a row in MODEL_FEATURES order for ours, named strings for AutoML's."""
    if framework == FRAMEWORK_AUTOML:
        return {
            name: None if value is None else repr(value)
            for name, value in zip(MODEL_FEATURES, values, strict=True)
        }
    return values


def _probability(predictions: Sequence[Any], framework: str) -> float:
    try:
        first = predictions[0]
        if framework == FRAMEWORK_AUTOML:
            classes = [str(c) for c in first["classes"]]
            return float(first["scores"][classes.index("1")])
        return float(first)
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise BackendUnavailableError(
            f"the endpoint's answer is not a {framework} prediction: {exc}"
        ) from exc
