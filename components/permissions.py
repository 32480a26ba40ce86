"""The project custom roles the stack defines: the one place their permissions
are written.

:mod:`components.access` creates each role from its :class:`CustomRoleSpec`,
:mod:`stacks.iam_matrix` declares the grants of it by its ``symbol``, and the
plan and the tests compare what the program creates with these specs. A test
pins a digest of each role's permissions, so a change here is never accepted
silently.

They replace ``roles/aiplatform.user``, which would let each account use and
change every Vertex AI resource in the project. Vertex AI has no
``aiplatform.operations.get`` permission: a long-running operation is polled
with the get permission of the resource it belongs to (``models.get``,
``endpoints.get``, ``pipelineJobs.get``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PermissionGroup:
    """Permissions granted together, and why the role needs them."""

    reason: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class CustomRoleSpec:
    """One project custom role: how the stack names it and exactly what it may do."""

    # How the IAM table names the role in its grants (``custom:endpoint-predictor``).
    symbol: str
    # The role id's suffix: ``fraud_mlops_<env>_<kind>`` (see stacks.naming.Names).
    kind: str
    title: str
    description: str
    groups: tuple[PermissionGroup, ...]

    @property
    def name(self) -> str:
        """The symbol without its ``custom:`` prefix; names the role's Pulumi resource."""
        return self.symbol.removeprefix("custom:")

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(p for g in self.groups for p in g.permissions)


ENDPOINT_PREDICTOR = CustomRoleSpec(
    symbol="custom:endpoint-predictor",
    kind="endpoint_predictor",
    title="Fraud endpoint predictor",
    description="Calls predict on a Vertex AI endpoint; cannot change or delete it",
    groups=(
        PermissionGroup(
            # roles/aiplatform.user on the endpoint would also let the caller deploy,
            # undeploy, shift traffic and delete.
            "the inference account scores on the endpoint and reads its metadata",
            ("aiplatform.endpoints.get", "aiplatform.endpoints.predict"),
        ),
    ),
)

ENDPOINT_DEPLOYER = CustomRoleSpec(
    symbol="custom:endpoint-deployer",
    kind="endpoint_deployer",
    title="Fraud endpoint deployer",
    description=(
        "Deploys and undeploys models on a Vertex AI endpoint and sets its traffic split; "
        "cannot delete it or call predict"
    ),
    groups=(
        PermissionGroup(
            "the training account's deploy step deploys the new version, undeploys the old "
            "one and sets the traffic split (update)",
            (
                "aiplatform.endpoints.deploy",
                "aiplatform.endpoints.undeploy",
                "aiplatform.endpoints.update",
            ),
        ),
        PermissionGroup(
            "reads the endpoint: how the gate finds the live model and how deploy "
            "operations are polled",
            ("aiplatform.endpoints.get",),
        ),
    ),
)

TRAINING_PIPELINE = CustomRoleSpec(
    symbol="custom:training-pipeline",
    kind="training_pipeline",
    title="Fraud training pipeline",
    description="Runs as a Vertex AI pipeline's account: records ML metadata and uploads models",
    # Models and ML Metadata have no resource-level IAM a stack can bind, so these
    # are project-wide; nothing here deletes, exports or changes IAM.
    groups=(
        PermissionGroup(
            "Model Registry: register_model uploads a version (a new model or a new version "
            "of it; AutoML's model is copied in as one, which models.upload covers); the gate "
            "and deploy steps read versions back by id or list them; the upload operation is "
            "polled with models.get",
            ("aiplatform.models.get", "aiplatform.models.list", "aiplatform.models.upload"),
        ),
        PermissionGroup(
            "labels each version with its snapshot and metrics, and the deploy step moves the "
            "champion alias (models.mergeVersionAliases is an update of the model)",
            ("aiplatform.models.update",),
        ),
        PermissionGroup(
            "the automl trainer's Google Cloud Pipeline Components run as this account: a "
            "tabular dataset from the run's export, an AutoML training pipeline, and a batch "
            "prediction of validation and holdout rows; the gate batch-predicts an AutoML "
            "champion on the same rows (cancelled if it overruns); each polled with its get",
            (
                "aiplatform.batchPredictionJobs.cancel",
                "aiplatform.batchPredictionJobs.create",
                "aiplatform.batchPredictionJobs.get",
                "aiplatform.datasets.create",
                "aiplatform.datasets.get",
                "aiplatform.trainingPipelines.create",
                "aiplatform.trainingPipelines.get",
            ),
        ),
        PermissionGroup(
            "Vertex ML Metadata as KFP on Vertex AI Pipelines uses it: each step is an "
            "execution in the default metadata store, its inputs and outputs are artifacts "
            "linked to it by events, and the run is a context (a child of the pipeline's "
            "context) that groups them",
            (
                "aiplatform.metadataStores.get",
                "aiplatform.artifacts.create",
                "aiplatform.artifacts.get",
                "aiplatform.artifacts.update",
                "aiplatform.executions.addExecutionEvents",
                "aiplatform.executions.create",
                "aiplatform.executions.get",
                "aiplatform.executions.update",
                "aiplatform.contexts.addContextArtifactsAndExecutions",
                "aiplatform.contexts.addContextChildren",
                "aiplatform.contexts.create",
                "aiplatform.contexts.get",
            ),
        ),
    ),
)

PIPELINE_LAUNCHER = CustomRoleSpec(
    symbol="custom:pipeline-launcher",
    kind="pipeline_launcher",
    title="Fraud pipeline launcher",
    description="Starts, follows and cancels Vertex AI pipeline runs; nothing else in Vertex AI",
    groups=(
        PermissionGroup(
            "the orchestration account starts a training run, waits for it, finds earlier "
            "runs and stops one; PipelineJobs have no resource-level IAM",
            (
                "aiplatform.pipelineJobs.cancel",
                "aiplatform.pipelineJobs.create",
                "aiplatform.pipelineJobs.get",
                "aiplatform.pipelineJobs.list",
            ),
        ),
    ),
)

FEATURE_VIEW_SYNCER = CustomRoleSpec(
    symbol="custom:feature-view-syncer",
    kind="feature_view_syncer",
    title="Fraud feature view syncer",
    description="Triggers and reads syncs of a Vertex AI feature view; cannot change or read it",
    groups=(
        PermissionGroup(
            "the orchestration account starts a sync of the feature view",
            ("aiplatform.featureViews.sync",),
        ),
        PermissionGroup(
            "and follows it and earlier ones (FeatureViewSyncs are the view's children)",
            ("aiplatform.featureViewSyncs.get", "aiplatform.featureViewSyncs.list"),
        ),
    ),
)

# Every custom role the stack creates, in the order Access creates them.
CUSTOM_ROLES: tuple[CustomRoleSpec, ...] = (
    PIPELINE_LAUNCHER,
    FEATURE_VIEW_SYNCER,
    TRAINING_PIPELINE,
    ENDPOINT_DEPLOYER,
    ENDPOINT_PREDICTOR,
)
