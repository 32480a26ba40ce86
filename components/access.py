"""Who may do what, bound at the narrowest scope GCP offers for each grant.

Grants that another component must have in place before it can create its own
resources live with that component (the storage agent's publish right in
:mod:`components.landing`, the build account's and the callers' in
:mod:`components.prediction_function`, key grants in :mod:`components.security`);
every other grant is here. All of them are declared, with a reason, in
:mod:`stacks.iam_matrix`, and a test holds the program to that table. The
custom roles' permissions are written once, in :mod:`components.permissions`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.base import Component
from components.feature_store import FeatureStore
from components.identity import Identity
from components.landing import Landing
from components.permissions import (
    ENDPOINT_DEPLOYER,
    ENDPOINT_PREDICTOR,
    FEATURE_VIEW_SYNCER,
    PIPELINE_LAUNCHER,
    TRAINING_PIPELINE,
    CustomRoleSpec,
)
from components.secrets import CardKeySecret
from components.service_agents import ServiceAgents
from components.serving_endpoint import ServingEndpoint
from components.training_pipeline import TrainingPipeline
from components.warehouse_datasets import WarehouseDatasets

_ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")


@dataclass(frozen=True)
class AccessArgs:
    project: str
    region: str
    identity: Identity
    warehouse: WarehouseDatasets
    landing: Landing
    feature_store: FeatureStore
    training_pipeline: TrainingPipeline
    endpoint: ServingEndpoint
    card_key: CardKeySecret
    agents: ServiceAgents
    # Project custom role ids (letters, digits, _ and .): the endpoint's callers,
    # the training account on the endpoint and in the project, and the
    # orchestration account in the project and on the feature view.
    predictor_role_id: str
    deployer_role_id: str
    training_role_id: str
    launcher_role_id: str
    syncer_role_id: str
    # Principals that upload to the landing bucket.
    landing_writers: Sequence[str] = ()

    def validate(self) -> None:
        missing = {"orchestration", "training", "sync", "inference"} - set(self.identity.accounts)
        if missing:
            raise ValueError(f"AccessArgs.identity: missing accounts {sorted(missing)}")
        role_ids = {
            "predictor_role_id": self.predictor_role_id,
            "deployer_role_id": self.deployer_role_id,
            "training_role_id": self.training_role_id,
            "launcher_role_id": self.launcher_role_id,
            "syncer_role_id": self.syncer_role_id,
        }
        for field, role_id in role_ids.items():
            if not _ROLE_ID.match(role_id):
                raise ValueError(
                    f"AccessArgs.{field}: {role_id!r} is not a role id ([a-zA-Z0-9_.]{{3,64}})"
                )
        if len(set(role_ids.values())) != len(role_ids):
            raise ValueError(f"AccessArgs role ids must be distinct: {sorted(role_ids.values())}")
        public = {"allUsers", "allAuthenticatedUsers"} & set(self.landing_writers)
        if public:
            raise ValueError(f"AccessArgs.landing_writers: {sorted(public)} is public")


class Access(Component):
    def __init__(
        self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Access", name, opts)
        self._args = args
        self.bindings: list[pulumi.CustomResource] = []
        ident, wh, land, fs = args.identity, args.warehouse, args.landing, args.feature_store
        root, endpoint = args.training_pipeline.bucket, args.endpoint.endpoint

        # Google-managed agents that act for us on our resources, created by
        # ServiceAgents before anything is granted to them.
        vertex_agent = args.agents.member("aiplatform")
        composer_agent = args.agents.member("composer")

        # --- orchestration: the Composer environment --------------------------
        orch = ident.member("orchestration")
        self._project(orch, "orchestration", "roles/composer.worker")
        self._project(orch, "orchestration", "roles/bigquery.jobUser")
        self.launcher_role = self._custom_role(PIPELINE_LAUNCHER, args.launcher_role_id)
        self._grant(
            "orchestration-pipelineLauncher-project",
            gcp.projects.IAMMember,
            project=args.project,
            role=self.launcher_role.name,
            member=orch,
        )
        self.syncer_role = self._custom_role(FEATURE_VIEW_SYNCER, args.syncer_role_id)
        self._grant(
            "orchestration-featureViewSyncer-view",
            gcp.vertex.AiFeatureOnlineStoreFeatureviewIamMember,
            project=args.project,
            region=args.region,
            feature_online_store=fs.store.name,
            feature_view=fs.view.name,
            role=self.syncer_role.name,
            member=orch,
        )
        self._bucket(orch, "orchestration", "roles/storage.objectViewer", land.bucket, "landing")
        self._subscription(orch, "orchestration", "roles/pubsub.subscriber", land.subscription)
        # The dead-letter path (components.landing): the DAG's failure callback publishes
        # a failed run's landing event to the dead-letter topic; `status` lists the
        # dead letters and `retry` takes them off their subscription and republishes
        # them to the landing topic, run as this account.
        self._topic(
            orch,
            "orchestration",
            "roles/pubsub.publisher",
            land.dead_letter_topic,
            "dead-letters",
        )
        self._subscription(
            orch,
            "orchestration",
            "roles/pubsub.subscriber",
            land.dead_letter_subscription,
            "dead-letters",
        )
        self._topic(orch, "orchestration", "roles/pubsub.publisher", land.topic, "landing")
        # The DAG's load, transform and snapshot tasks, and its train task, which records
        # the run in lineage (the pipeline's own account never writes lineage).
        written = (
            ("raw", wh.raw),
            ("training", wh.training),
            ("snapshot", wh.snapshots),
            ("lineage", wh.lineage),
        )
        for label, ds in written:
            self._dataset(orch, "orchestration", "roles/bigquery.dataEditor", ds, label)
        self._bucket(orch, "orchestration", "roles/storage.objectViewer", root, "root")
        self._account(orch, "orchestration", "roles/iam.serviceAccountUser", "training")
        self._account(orch, "orchestration", "roles/iam.serviceAccountTokenCreator", "sync")
        self._secret(orch, "orchestration")

        # --- training: Vertex AI pipeline runs ---------------------------------
        train = ident.member("training")
        self._project(train, "training", "roles/bigquery.jobUser")
        self.training_role = self._custom_role(TRAINING_PIPELINE, args.training_role_id)
        self._grant(
            "training-trainingPipeline-project",
            gcp.projects.IAMMember,
            project=args.project,
            role=self.training_role.name,
            member=train,
        )
        self.deployer_role = self._custom_role(ENDPOINT_DEPLOYER, args.deployer_role_id)
        self._grant(
            "training-deployer-endpoint",
            gcp.vertex.AiEndpointIamMember,
            project=args.project,
            location=args.region,
            endpoint=endpoint.name,
            role=self.deployer_role.name,
            member=train,
        )
        self._dataset(train, "training", "roles/bigquery.dataViewer", wh.snapshots, "snapshot")
        self._bucket(train, "training", "roles/storage.objectUser", root, "root")
        self._account(train, "training", "roles/iam.serviceAccountUser", "training")

        # --- sync: rebuilds the feature view's source table from a snapshot ------
        sync = ident.member("sync")
        self._project(sync, "sync", "roles/bigquery.jobUser")
        self._dataset(sync, "sync", "roles/bigquery.dataViewer", wh.snapshots, "snapshot")
        self._table(sync, "sync", "roles/bigquery.dataEditor", wh.feature_table, "features")

        # --- inference: the prediction function --------------------------------
        infer = ident.member("inference")
        self._grant(
            "inference-featurestoreDataViewer-view",
            gcp.vertex.AiFeatureOnlineStoreFeatureviewIamMember,
            project=args.project,
            region=args.region,
            feature_online_store=fs.store.name,
            feature_view=fs.view.name,
            role="roles/aiplatform.featurestoreDataViewer",
            member=infer,
        )
        # roles/aiplatform.user on the endpoint would also let the caller deploy,
        # undeploy, shift traffic and delete; scoring needs predict and get only.
        self.predictor_role = self._custom_role(ENDPOINT_PREDICTOR, args.predictor_role_id)
        self._grant(
            "inference-predictor-endpoint",
            gcp.vertex.AiEndpointIamMember,
            project=args.project,
            location=args.region,
            endpoint=endpoint.name,
            role=self.predictor_role.name,
            member=infer,
        )
        self._secret(infer, "inference")

        # --- uploaders: write new files, read nothing -------------------------------
        for member in args.landing_writers:
            digest = hashlib.sha256(member.encode()).hexdigest()[:8]
            self._bucket(
                member, f"writer-{digest}", "roles/storage.objectCreator", land.bucket, "landing"
            )

        # --- service agents ------------------------------------------------------
        self._account(
            composer_agent,
            "composer-agent",
            "roles/composer.ServiceAgentV2Ext",
            "orchestration",
        )
        self._table(
            vertex_agent,
            "vertex-agent",
            "roles/bigquery.dataViewer",
            wh.feature_table,
            "features",
        )
        self._dataset(
            vertex_agent,
            "vertex-agent",
            "roles/bigquery.dataEditor",
            wh.predictions,
            "predictions",
        )
        # Model uploads and batch predictions run as Vertex AI's agent: it copies each
        # version's artifact from models/, and reads the gate's batch-score inputs and
        # writes their predictions there.
        self._bucket(vertex_agent, "vertex-agent", "roles/storage.objectUser", root, "root")

        self.register_outputs({"bindings": len(self.bindings)})

    def _custom_role(self, spec: CustomRoleSpec, role_id: str) -> gcp.projects.IAMCustomRole:
        return gcp.projects.IAMCustomRole(
            self.n(f"{spec.name}-role"),
            project=self._args.project,
            role_id=role_id,
            title=spec.title,
            description=spec.description,
            # Sorted: the same set in any order is the same role, not an update.
            permissions=sorted(spec.permissions),
            stage="GA",
            opts=self.child(),
        )

    # --- one helper per scope ------------------------------------------------------

    def _grant(self, suffix: str, cls: Callable[..., pulumi.CustomResource], **kwargs: Any) -> None:
        self.bindings.append(cls(self.n(suffix), opts=self.child(), **kwargs))

    @staticmethod
    def _short(role: str) -> str:
        return role.removeprefix("roles/").replace(".", "-")

    def _project(self, member: pulumi.Input[str], who: str, role: str) -> None:
        self._grant(
            f"{who}-{self._short(role)}-project",
            gcp.projects.IAMMember,
            project=self._args.project,
            role=role,
            member=member,
        )

    def _dataset(
        self, member: pulumi.Input[str], who: str, role: str, ds: gcp.bigquery.Dataset, label: str
    ) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{label}",
            gcp.bigquery.DatasetIamMember,
            project=self._args.project,
            dataset_id=ds.dataset_id,
            role=role,
            member=member,
        )

    def _table(
        self, member: pulumi.Input[str], who: str, role: str, table: gcp.bigquery.Table, label: str
    ) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{label}",
            gcp.bigquery.IamMember,
            project=self._args.project,
            dataset_id=table.dataset_id,
            table_id=table.table_id,
            role=role,
            member=member,
        )

    def _bucket(
        self, member: pulumi.Input[str], who: str, role: str, bucket: gcp.storage.Bucket, label: str
    ) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{label}",
            gcp.storage.BucketIAMMember,
            bucket=bucket.name,
            role=role,
            member=member,
        )

    def _subscription(
        self,
        member: pulumi.Input[str],
        who: str,
        role: str,
        sub: gcp.pubsub.Subscription,
        label: str = "landing",
    ) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{label}",
            gcp.pubsub.SubscriptionIAMMember,
            project=self._args.project,
            subscription=sub.name,
            role=role,
            member=member,
        )

    def _topic(
        self, member: pulumi.Input[str], who: str, role: str, topic: gcp.pubsub.Topic, label: str
    ) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{label}-topic",
            gcp.pubsub.TopicIAMMember,
            project=self._args.project,
            topic=topic.name,
            role=role,
            member=member,
        )

    def _account(self, member: pulumi.Input[str], who: str, role: str, target: str) -> None:
        self._grant(
            f"{who}-{self._short(role)}-{target}",
            gcp.serviceaccount.IAMMember,
            service_account_id=self._args.identity.resource_name(target),
            role=role,
            member=member,
        )

    def _secret(self, member: pulumi.Input[str], who: str) -> None:
        self._grant(
            f"{who}-secretAccessor-card-key",
            gcp.secretmanager.SecretIamMember,
            project=self._args.project,
            secret_id=self._args.card_key.secret.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=member,
        )
