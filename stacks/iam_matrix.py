"""The declared least-privilege IAM table: every grant the stack may make, with
its scope and its reason. Tests compare it with the bindings the program really
creates; the plan command prints both.

Members and resources are symbolic here (``sa:inference``, ``table:features``)
and rendered for a stack by :func:`expected_bindings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.landing import dead_letter_name
from components.permissions import CUSTOM_ROLES as ALL_CUSTOM_ROLES
from components.permissions import CustomRoleSpec
from stacks.config import StackConfig
from stacks.naming import Names

Condition = Literal["always", "cmek", "public"]

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


@dataclass(frozen=True, order=True)
class Binding:
    """One concrete grant: ``member`` has ``role`` on ``resource`` (a full resource name),
    only where the IAM ``condition`` (a CEL expression) holds, if it has one."""

    member: str
    role: str
    resource: str
    condition: str = ""


@dataclass(frozen=True)
class Grant:
    member: str
    role: str
    resource: str
    reason: str
    when: Condition = "always"
    # An IAM condition that narrows the grant; ``{number}`` and ``{region}`` are the
    # stack's project number and region.
    condition: str = ""


_JOB = "running a query or load job is a project permission (bigquery.jobs.create)"
# Cloud Functions' staging bucket for this region's sources, and its CMEK variants.
STAGED_SOURCES = 'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-{number}-{region}")'
_VERTEX = "PipelineJobs, models and ML metadata have no resource-level IAM"


# Every custom role the stack creates, keyed by its symbol in TABLE. Their
# permissions, with a reason per group, are written once in components.permissions;
# the plan and the tests compare them with the roles the program really creates.
CUSTOM_ROLES: dict[str, CustomRoleSpec] = {role.symbol: role for role in ALL_CUSTOM_ROLES}

TABLE: tuple[Grant, ...] = (
    # --- project level: only where GCP has no narrower scope -----------------
    Grant(
        "sa:orchestration",
        "roles/composer.worker",
        "project",
        "Composer 3 requires it, on the project, for the environment's own account",
    ),
    Grant("sa:orchestration", "roles/bigquery.jobUser", "project", _JOB),
    Grant(
        "sa:orchestration",
        "custom:pipeline-launcher",
        "project",
        f"starts, follows and cancels the training pipeline runs; {_VERTEX}. "
        "Nothing else in Vertex AI",
    ),
    Grant("sa:training", "roles/bigquery.jobUser", "project", _JOB),
    Grant(
        "sa:training",
        "custom:training-pipeline",
        "project",
        "as the pipeline's account, records each step's ML metadata (executions, artifacts, "
        "contexts) and uploads and reads model versions in the registry; "
        f"{_VERTEX}. Cannot delete, export, deploy, or run jobs",
    ),
    Grant("sa:sync", "roles/bigquery.jobUser", "project", _JOB),
    Grant(
        "sa:build",
        "roles/logging.logWriter",
        "project",
        "build logs are written to the project; logs have no per-build IAM",
    ),
    Grant(
        "sa:build",
        "roles/storage.objectViewer",
        "project",
        "Cloud Functions copies the source archive into its own gcf-v2-sources bucket "
        "(with a key, -<key hash> appended) and the build fetches it from there; Cloud "
        "Functions creates that bucket on the first deploy, so no bucket grant can come "
        "first. The condition holds the grant to that bucket (roles/run.builder's "
        "storage.objects.get, scoped)",
        condition=STAGED_SOURCES,
    ),
    # --- orchestration ------------------------------------------------------------
    Grant("sa:orchestration", "roles/storage.objectViewer", "bucket:landing", "reads landed files"),
    Grant(
        "sa:orchestration",
        "roles/pubsub.subscriber",
        "subscription:landing",
        "consumes the landing notifications that trigger the DAG",
    ),
    Grant(
        "sa:orchestration",
        "roles/pubsub.publisher",
        "topic:dead-letters",
        "the DAG's failure callback dead-letters the landing event of a run that failed "
        "for good (the trigger acked it when it pulled it), with the reason",
    ),
    Grant(
        "sa:orchestration",
        "roles/pubsub.subscriber",
        "subscription:dead-letters",
        "`status` lists the dead letters (leased and released at once) and `retry` "
        "acknowledges each one it republished; run as this account",
    ),
    Grant(
        "sa:orchestration",
        "roles/pubsub.publisher",
        "topic:landing",
        "`retry` republishes a dead letter's notification to the landing topic, a fresh "
        "delivery for the DAG trigger; run as this account",
    ),
    Grant(
        "sa:orchestration",
        "roles/bigquery.dataEditor",
        "dataset:raw",
        "loads landed files (through a staging table it creates and drops)",
    ),
    Grant(
        "sa:orchestration",
        "roles/bigquery.dataEditor",
        "dataset:training",
        "rebuilds the training table",
    ),
    Grant(
        "sa:orchestration",
        "roles/bigquery.dataEditor",
        "dataset:snapshot",
        "pins each run's data as a table snapshot",
    ),
    Grant(
        "sa:orchestration",
        "roles/bigquery.dataEditor",
        "dataset:lineage",
        "records each ingest with its rows, each snapshot, and each training run (the train "
        "task); creates the lineage tables on first use",
    ),
    Grant(
        "sa:orchestration",
        "custom:feature-view-syncer",
        "featureview",
        "triggers the feature view's sync after each snapshot and follows it; cannot read "
        "features or change the view",
    ),
    Grant(
        "sa:orchestration",
        "roles/storage.objectViewer",
        "bucket:root",
        "reads the compiled pipeline template it submits",
    ),
    Grant(
        "sa:orchestration",
        "roles/iam.serviceAccountUser",
        "sa:training",
        "submits pipeline runs that run as the training account",
    ),
    Grant(
        "sa:orchestration",
        "roles/iam.serviceAccountTokenCreator",
        "sa:sync",
        "runs the feature refresh task as the sync account",
    ),
    Grant(
        "sa:orchestration",
        "roles/secretmanager.secretAccessor",
        "secret:card-key",
        "hashes card numbers while loading",
    ),
    # --- training -------------------------------------------------------------------
    Grant(
        "sa:training",
        "roles/bigquery.dataViewer",
        "dataset:snapshot",
        "trains on the pinned snapshot, never on the moving table",
    ),
    Grant(
        "sa:training",
        "roles/storage.objectUser",
        "bucket:root",
        "reads and writes pipeline artifacts and models; no bucket IAM or ACL changes",
    ),
    Grant(
        "sa:training",
        "custom:endpoint-deployer",
        "endpoint",
        "the deploy step deploys the new version, undeploys the old one and sets the traffic "
        "split on this endpoint only; cannot delete it or call predict",
    ),
    Grant(
        "sa:training",
        "roles/iam.serviceAccountUser",
        "sa:training",
        "launches custom training jobs as itself",
    ),
    # --- sync -------------------------------------------------------------------------
    Grant(
        "sa:sync",
        "roles/bigquery.dataViewer",
        "dataset:snapshot",
        "computes each card's latest features from the run's snapshot",
    ),
    Grant(
        "sa:sync",
        "roles/bigquery.dataEditor",
        "table:features",
        "writes the latest features per card; nobody else can",
    ),
    # --- inference ------------------------------------------------------------------
    Grant(
        "sa:inference",
        "roles/aiplatform.featurestoreDataViewer",
        "featureview",
        "reads one card's online features",
    ),
    Grant(
        "sa:inference",
        "custom:endpoint-predictor",
        "endpoint",
        "calls predict on this endpoint only; cannot deploy, undeploy, shift traffic or delete",
    ),
    Grant(
        "sa:inference",
        "roles/secretmanager.secretAccessor",
        "secret:card-key",
        "hashes the card number of each request",
    ),
    # --- build ----------------------------------------------------------------------
    Grant(
        "sa:build",
        "roles/storage.objectViewer",
        "bucket:source",
        "reads the function's source archive",
    ),
    Grant(
        "sa:build",
        "roles/artifactregistry.repoAdmin",
        "repository",
        "pushes the function's image and may delete the artifacts it replaces, as "
        "roles/run.builder may (artifactregistry.repositories.deleteArtifacts, which "
        "roles/artifactregistry.writer lacks); this repository holds only these builds",
    ),
    # --- uploaders ---------------------------------------------------------------
    Grant(
        "landing-writers",
        "roles/storage.objectCreator",
        "bucket:landing",
        "principals named in landing.writers upload files; they cannot read or overwrite",
    ),
    # --- callers ----------------------------------------------------------------------
    Grant(
        "invokers",
        "roles/run.invoker",
        "function",
        "principals named in function.invokers may call the function",
    ),
    Grant(
        "allUsers",
        "roles/run.invoker",
        "function",
        "only when function.public is set",
        when="public",
    ),
    # --- Google service agents --------------------------------------------------------
    Grant(
        "agent:storage",
        "roles/pubsub.publisher",
        "topic:landing",
        "Cloud Storage publishes the bucket's OBJECT_FINALIZE notifications",
    ),
    Grant(
        "agent:pubsub",
        "roles/pubsub.publisher",
        "topic:dead-letters",
        "the landing subscription's dead-letter policy forwards a message delivered "
        "MAX_DELIVERIES times as Pub/Sub's agent",
    ),
    Grant(
        "agent:pubsub",
        "roles/pubsub.subscriber",
        "subscription:landing",
        "and acknowledges the forwarded message on the landing subscription",
    ),
    Grant(
        "agent:composer",
        "roles/composer.ServiceAgentV2Ext",
        "sa:orchestration",
        "Composer runs the environment as the orchestration account",
    ),
    Grant(
        "agent:aiplatform",
        "roles/bigquery.dataViewer",
        "table:features",
        "Vertex AI syncs the feature view from this table",
    ),
    Grant(
        "agent:aiplatform",
        "roles/bigquery.dataEditor",
        "dataset:predictions",
        "Vertex AI writes the endpoint's request/response log",
    ),
    Grant(
        "agent:aiplatform",
        "roles/storage.objectUser",
        "bucket:root",
        "model uploads and batch predictions run as Vertex AI's agent: it copies each "
        "version's artifact from models/, reads the gate's batch-score inputs and writes "
        "their predictions; no bucket IAM or ACL changes",
    ),
    *(
        Grant(
            f"agent:{agent}",
            "roles/cloudkms.cryptoKeyEncrypterDecrypter",
            "kms-key",
            "encrypts this service's data with the stack's key",
            when="cmek",
        )
        for agent in (
            "artifactregistry",
            "aiplatform",
            "bigquery",
            "cloudfunctions",
            "composer",
            "pubsub",
            "run",
            "secretmanager",
            "storage",
        )
    ),
)

_AGENT_DOMAINS = {
    "storage": "gs-project-accounts.iam.gserviceaccount.com",
    "aiplatform": "gcp-sa-aiplatform.iam.gserviceaccount.com",
    "composer": "cloudcomposer-accounts.iam.gserviceaccount.com",
    "artifactregistry": "gcp-sa-artifactregistry.iam.gserviceaccount.com",
    "pubsub": "gcp-sa-pubsub.iam.gserviceaccount.com",
    "secretmanager": "gcp-sa-secretmanager.iam.gserviceaccount.com",
    "cloudfunctions": "gcf-admin-robot.iam.gserviceaccount.com",
    "run": "serverless-robot-prod.iam.gserviceaccount.com",
}


def agent_email(agent: str, project_number: str) -> str:
    if agent == "bigquery":
        return f"bq-{project_number}@bigquery-encryption.iam.gserviceaccount.com"
    return f"service-{project_number}@{_AGENT_DOMAINS[agent]}"


def resource_names(cfg: StackConfig) -> dict[str, str]:
    """Symbolic resource -> full resource name, for this stack."""
    n = Names.of(cfg)
    p, r = cfg.project, cfg.region
    bq = f"//bigquery.googleapis.com/projects/{p}/datasets"
    out = {
        "project": f"//cloudresourcemanager.googleapis.com/projects/{p}",
        "dataset:raw": f"{bq}/{n.dataset('raw')}",
        "dataset:training": f"{bq}/{n.dataset('training')}",
        "dataset:snapshot": f"{bq}/{n.dataset('snapshot')}",
        "dataset:lineage": f"{bq}/{n.dataset('lineage')}",
        "dataset:predictions": f"{bq}/{n.dataset('predictions')}",
        "dataset:features": f"{bq}/{n.dataset('features')}",
        "table:features": f"{bq}/{n.dataset('features')}/tables/card_features",
        "bucket:landing": f"//storage.googleapis.com/projects/_/buckets/{n.bucket('landing')}",
        "bucket:root": f"//storage.googleapis.com/projects/_/buckets/{n.bucket('pipeline')}",
        "bucket:source": f"//storage.googleapis.com/projects/_/buckets/{n.bucket('fn-source')}",
        "topic:landing": f"//pubsub.googleapis.com/projects/{p}/topics/{n.landing_topic}",
        "subscription:landing": (
            f"//pubsub.googleapis.com/projects/{p}/subscriptions/{n.landing_subscription}"
        ),
        "topic:dead-letters": (
            f"//pubsub.googleapis.com/projects/{p}/topics/{dead_letter_name(n.landing_topic)}"
        ),
        "subscription:dead-letters": (
            f"//pubsub.googleapis.com/projects/{p}/subscriptions/"
            f"{dead_letter_name(n.landing_subscription)}"
        ),
        "secret:card-key": f"//secretmanager.googleapis.com/projects/{p}/secrets/"
        f"{n.card_key_secret}",
        "featureview": f"//aiplatform.googleapis.com/projects/{p}/locations/{r}/"
        f"featureOnlineStores/{n.online_store}/featureViews/{n.feature_view}",
        "endpoint": f"//aiplatform.googleapis.com/projects/{p}/locations/{r}/endpoints/"
        f"{n.endpoint}",
        "function": f"//run.googleapis.com/projects/{p}/locations/{r}/services/{n.function}",
        "repository": f"//artifactregistry.googleapis.com/projects/{p}/locations/{r}/"
        f"repositories/{n.function_repository}",
        "kms-key": f"//cloudkms.googleapis.com/{cfg.cmek.kms_key_name}",
    }
    for role in ("orchestration", "training", "sync", "inference", "build"):
        out[f"sa:{role}"] = (
            f"//iam.googleapis.com/projects/{p}/serviceAccounts/{n.account_email(role)}"
        )
    return out


def role_name(symbol: str, cfg: StackConfig) -> str:
    """A predefined role as is; ``custom:...`` as this stack's project custom role."""
    if symbol.startswith("custom:"):
        if symbol not in CUSTOM_ROLES:
            raise ValueError(f"unknown custom role {symbol!r}")
        role_id = Names.of(cfg).custom_role(CUSTOM_ROLES[symbol].kind)
        return f"projects/{cfg.project}/roles/{role_id}"
    return symbol


def expected_custom_roles(cfg: StackConfig) -> dict[str, frozenset[str]]:
    """This stack's custom roles (full role name) and the permissions each must hold."""
    return {role_name(symbol, cfg): role.permissions for symbol, role in CUSTOM_ROLES.items()}


def _members(symbol: str, cfg: StackConfig, project_number: str) -> list[str]:
    kind, _, name = symbol.partition(":")
    if kind == "sa":
        return [f"serviceAccount:{Names.of(cfg).account_email(name)}"]
    if kind == "agent":
        return [f"serviceAccount:{agent_email(name, project_number)}"]
    if symbol == "invokers":
        return list(cfg.function.invokers)
    if symbol == "landing-writers":
        return list(cfg.landing.writers)
    return [symbol]


def applies(grant: Grant, cfg: StackConfig) -> bool:
    if grant.when == "cmek":
        return cfg.kms_key is not None
    if grant.when == "public":
        return cfg.function.public
    return True


def expected_bindings(cfg: StackConfig, project_number: str) -> dict[Binding, Grant]:
    """The concrete bindings this stack's config calls for, each with its declaration."""
    names = resource_names(cfg)
    out: dict[Binding, Grant] = {}
    for grant in TABLE:
        if not applies(grant, cfg):
            continue
        condition = grant.condition.format(number=project_number, region=cfg.region)
        for member in _members(grant.member, cfg, project_number):
            binding = Binding(member, role_name(grant.role, cfg), names[grant.resource], condition)
            out[binding] = grant
    return out


def declared_reason(binding: Binding, cfg: StackConfig, project_number: str) -> str | None:
    grant = expected_bindings(cfg, project_number).get(binding)
    return grant.reason if grant else None
