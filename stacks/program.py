"""The stack: every component wired together, and the runtime config the app
reads built from their outputs and handed to Composer and the function.

``stacks/__main__.py`` (what ``pulumi up`` runs) and ``stacks/plan.py`` (the
offline plan) both call :func:`main`, so they run the same program.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pulumi

from app.core.schema import FEATURE_VIEW_SCHEMA
from components.access import Access, AccessArgs
from components.container_images import ContainerImages, ContainerImagesArgs
from components.feature_store import FeatureStore, FeatureStoreArgs
from components.identity import Identity, IdentityArgs
from components.landing import Landing, LandingArgs
from components.orchestration import Orchestration, OrchestrationArgs
from components.prediction_function import PredictionFunction, PredictionFunctionArgs
from components.secrets import CardKeySecret, CardKeySecretArgs
from components.security import (
    CMEK_CREATED_AGENTS,
    AuditLogs,
    AuditLogsArgs,
    KeyAccess,
    KeyAccessArgs,
    Perimeter,
    PerimeterArgs,
)
from components.service_agents import BASE_AGENTS, ServiceAgents, ServiceAgentsArgs
from components.services import (
    PERIMETER_APIS,
    REQUIRED_APIS,
    ProjectServices,
    ProjectServicesArgs,
)
from components.serving_endpoint import ServingEndpoint, ServingEndpointArgs
from components.training_pipeline import TrainingPipeline, TrainingPipelineArgs
from components.warehouse_datasets import WarehouseDatasets, WarehouseDatasetsArgs
from stacks.config import NAMESPACE, StackConfig, Trainer, from_pulumi
from stacks.naming import ROLES, Names
from stacks.runtime_config import ResolvedOutputs, build_runtime_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTITY_ID_COLUMN = FEATURE_VIEW_SCHEMA[0].name  # card_id
# What the DAG's code imports that the Composer 3 image lacks (it has pydantic, pandas,
# pyarrow and the Google clients); pinned as in uv.lock (tests/infra checks the pins).
COMPOSER_PACKAGES: dict[str, str] = {"sqlglot": "==30.30.0"}


# Where the program writes what it builds for upload: the pipeline template and the
# function's archive. Outside the tree, so a run (preview, plan) leaves it clean.
BUILD_DIR = Path(tempfile.gettempdir()) / "fraud-mlops-build"


def compile_template(build_dir: Path, *, trainer: Trainer, image: str) -> Path:
    """Compile the KFP pipeline (``app.pipeline``) for ``trainer`` on ``image`` into
    ``build_dir``; returns the file.

    The file is named by its content, like the function's archive, so two runs on one
    machine (another checkout, another stack) never upload each other's template.
    """
    # Imported here: only a run that compiles needs KFP and the pipeline's steps.
    from app.pipeline.compile import compile_pipeline

    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_dir) as scratch:
        data = compile_pipeline(
            Path(scratch) / "pipeline.yaml", trainer=trainer, image=image
        ).read_bytes()
    path = build_dir / f"fraud-training-{hashlib.sha256(data).hexdigest()[:16]}.yaml"
    if not path.is_file() or path.read_bytes() != data:
        # Replaced whole, so a concurrent run uploading the same name never reads half.
        partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def check_template(cfg: StackConfig, root: Path, build_dir: Path | None = None) -> Path | None:
    """Before any resource: the prebuilt template ``pipeline.templatePath`` names, or,
    without one, a compile of this tree's pipeline (on the local image, which needs no
    digest yet), so a pipeline that does not compile fails the run cleanly, preview too.
    Returns the prebuilt template, if there is one.
    """
    if not cfg.pipeline.template_path:
        from app.pipeline.compile import LOCAL_TRAINER_IMAGE

        compile_template(
            build_dir or BUILD_DIR, trainer=cfg.pipeline.trainer, image=LOCAL_TRAINER_IMAGE
        )
        return None
    path = Path(cfg.pipeline.template_path)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ValueError(
            f"{NAMESPACE}:pipeline.templatePath: {path} does not exist; leave the key "
            "unset and the program compiles the pipeline itself"
        )
    return path


def template_for(cfg: StackConfig, prebuilt: Path | None, trainer_image: str) -> str:
    """The template to upload, as a path: the prebuilt one, or this tree's pipeline
    compiled on the trainer image's digest (known once the image is pushed)."""
    if prebuilt is not None:
        return str(prebuilt)
    return str(compile_template(BUILD_DIR, trainer=cfg.pipeline.trainer, image=trainer_image))


def build(cfg: StackConfig, root: Path) -> dict[str, Any]:
    """Create every resource for ``cfg``; returns the stack outputs."""
    names = Names.of(cfg)
    p, r, labels = cfg.project, cfg.region, cfg.all_labels
    protect = cfg.deletion_protection
    key = cfg.kms_key
    # Before any resource: a pipeline that does not compile fails the run cleanly.
    prebuilt_template = check_template(cfg, root)

    perimeter = bool(cfg.vpc_service_controls.access_policy)
    services = ProjectServices(
        "services",
        ProjectServicesArgs(project=p, apis=REQUIRED_APIS + (PERIMETER_APIS if perimeter else ())),
    )
    after_apis = pulumi.ResourceOptions(depends_on=[services])

    if cfg.audit_logs.enabled:
        AuditLogs("audit-logs", AuditLogsArgs(project=p), after_apis)
    # Only agents that get a grant: the encrypting ones only when there is a key.
    agent_services = sorted({*BASE_AGENTS, *(CMEK_CREATED_AGENTS if key else ())})
    agents = ServiceAgents(
        "service-agents", ServiceAgentsArgs(project=p, services=agent_services), after_apis
    )
    kms_ready: list[pulumi.Resource] = []
    if key:
        kms_ready.append(
            KeyAccess(
                "key-access",
                KeyAccessArgs(
                    project=p,
                    kms_key_name=key,
                    agent_members={a: agents.member(a) for a in CMEK_CREATED_AGENTS},
                ),
                after_apis,
            )
        )

    identity = Identity(
        "identity",
        IdentityArgs(project=p, account_ids={role: names.account_id(role) for role in ROLES}),
        after_apis,
    )
    card_key = CardKeySecret(
        "card-key",
        CardKeySecretArgs(
            project=p,
            region=r,
            secret_id=names.card_key_secret,
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    warehouse = WarehouseDatasets(
        "warehouse",
        WarehouseDatasetsArgs(
            project=p,
            location=r,
            dataset_prefix=names.dataset_prefix,
            snapshot_expiration_days=cfg.warehouse.snapshot_expiration_days,
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
        ),
        pulumi.ResourceOptions(depends_on=[services, *kms_ready]),
    )
    landing = Landing(
        "landing",
        LandingArgs(
            project=p,
            location=r,
            bucket_name=names.bucket("landing"),
            topic_name=names.landing_topic,
            subscription_name=names.landing_subscription,
            deletion_protection=protect,
            pubsub_agent=agents.member("pubsub"),
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    feature_source = pulumi.Output.format(
        "bq://{0}.{1}.{2}", p, warehouse.feature_table.dataset_id, warehouse.feature_table.table_id
    )
    feature_store = FeatureStore(
        "feature-store",
        FeatureStoreArgs(
            project=p,
            region=r,
            store_id=names.online_store,
            view_id=names.feature_view,
            source_table_uri=feature_source,
            entity_id_column=ENTITY_ID_COLUMN,
            min_nodes=cfg.feature_store.min_nodes,
            max_nodes=cfg.feature_store.max_nodes,
            cpu_target=cfg.feature_store.cpu_target,
            sync_cron=cfg.feature_store.sync_cron,
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    request_log = (
        pulumi.Output.format("bq://{0}.{1}", p, warehouse.predictions.dataset_id)
        if cfg.endpoint.request_logging
        else None
    )
    images = ContainerImages(
        "images",
        ContainerImagesArgs(
            project=p,
            region=r,
            repository_id=names.image_repository,
            source_root=root,
            build_dir=BUILD_DIR,
            trainer_image_ref=cfg.images.trainer or None,
            serving_image_ref=cfg.images.serving or None,
            # Vertex AI's own agents pull from a repository in the same project by their
            # default roles, so the stack grants no readers.
            labels=labels,
            deletion_protection=protect,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    pipeline = TrainingPipeline(
        "training-pipeline",
        TrainingPipelineArgs(
            project=p,
            region=r,
            bucket_name=names.bucket("pipeline"),
            # The template names the trainer image by digest, so it is compiled once
            # the image's digest is known (at once when the image is prebuilt).
            template_path=images.trainer_image.apply(
                lambda ref: template_for(cfg, prebuilt_template, ref)
            ),
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    serving = ServingEndpoint(
        "serving",
        ServingEndpointArgs(
            project=p,
            region=r,
            endpoint_id=names.endpoint,
            request_log_dataset_uri=request_log,
            request_log_sampling_rate=cfg.endpoint.request_logging_sampling_rate,
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
        ),
        after_apis,
    )
    access = Access(
        "access",
        AccessArgs(
            project=p,
            region=r,
            identity=identity,
            warehouse=warehouse,
            landing=landing,
            feature_store=feature_store,
            training_pipeline=pipeline,
            endpoint=serving,
            card_key=card_key,
            agents=agents,
            predictor_role_id=names.endpoint_predictor_role,
            deployer_role_id=names.endpoint_deployer_role,
            training_role_id=names.training_pipeline_role,
            launcher_role_id=names.pipeline_launcher_role,
            syncer_role_id=names.feature_view_syncer_role,
            landing_writers=cfg.landing.writers,
        ),
        after_apis,
    )

    runtime_config_json = pulumi.Output.all(
        raw_dataset=warehouse.raw.dataset_id,
        training_dataset=warehouse.training.dataset_id,
        snapshot_dataset=warehouse.snapshots.dataset_id,
        lineage_dataset=warehouse.lineage.dataset_id,
        online_store_id=feature_store.store.name,
        feature_view_id=feature_store.view.name,
        feature_source_table_uri=feature_source,
        sync_account=identity.email("sync"),
        pipeline_root=pipeline.pipeline_root,
        template_uri=pipeline.template_uri,
        model_artifact_root=pipeline.model_root,
        trainer_image=images.trainer_image,
        serving_image=images.serving_image,
        training_account=identity.email("training"),
        endpoint_id=serving.endpoint.name,
        landing_bucket=landing.bucket.name,
        landing_subscription=landing.subscription.id,
        landing_topic=landing.topic.id,
        landing_dead_letter_topic=landing.dead_letter_topic.id,
        landing_dead_letter_subscription=landing.dead_letter_subscription.id,
    ).apply(
        lambda v: build_runtime_config(
            cfg,
            ResolvedOutputs(
                **v,
                # Known before the environment exists: naming it here keeps the
                # function from waiting half an hour for Composer.
                composer_environment=names.composer,
                card_key_version=card_key.version,
            ),
        ).to_json()
    )

    orchestration = Orchestration(
        "orchestration",
        OrchestrationArgs(
            project=p,
            region=r,
            environment_name=names.composer,
            image_version=cfg.composer.image_version,
            environment_size=cfg.composer.environment_size,
            service_account_email=identity.email("orchestration"),
            runtime_config_json=runtime_config_json,
            source_root=root,
            worker_min_count=cfg.composer.worker_min_count,
            worker_max_count=cfg.composer.worker_max_count,
            private_ip=cfg.composer.private_ip,
            deletion_protection=protect,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
            landing_subscription=landing.subscription.id,
            pypi_packages=COMPOSER_PACKAGES,
        ),
        # Composer checks its account's roles when the environment is created.
        pulumi.ResourceOptions(depends_on=[services, access]),
    )
    function = PredictionFunction(
        "prediction",
        PredictionFunctionArgs(
            project=p,
            region=r,
            function_name=names.function,
            source_bucket_name=names.bucket("fn-source"),
            repository_id=names.function_repository,
            source_root=root,
            runtime_config_json=runtime_config_json,
            inference_account_email=identity.email("inference"),
            build_account=identity.accounts["build"],
            min_instances=cfg.function.min_instances,
            max_instances=cfg.function.max_instances,
            memory=cfg.function.memory,
            workers=cfg.function.workers,
            threads=cfg.function.threads,
            deletion_protection=protect,
            invokers=cfg.function.invokers,
            public=cfg.function.public,
            labels=labels,
            kms_key_name=key,
            kms_ready=kms_ready,
            build_dir=BUILD_DIR,
        ),
        pulumi.ResourceOptions(depends_on=[services, access]),
    )
    if perimeter:
        Perimeter(
            "perimeter",
            PerimeterArgs(
                project=p,
                access_policy=cfg.vpc_service_controls.access_policy,
                perimeter_name=f"fraud_mlops_{cfg.environment}",
                dry_run=cfg.vpc_service_controls.dry_run,
                kms_key_name=key,
            ),
            # Last, so the perimeter (enforced) cannot block the stack's own deployment;
            # its project lookup also needs the APIs on.
            pulumi.ResourceOptions(depends_on=[services, orchestration, function]),
        )

    return {
        "runtimeConfig": runtime_config_json.apply(json.loads),
        "functionUrl": function.url,
        "composerEnvironment": orchestration.environment.name,
        "composerBucket": orchestration.bucket,
        "airflowUri": orchestration.environment.config.apply(lambda c: c.airflow_uri),
        "landingBucket": landing.bucket.name,
        "pipelineTemplateUri": pipeline.template_uri,
        "trainerImage": images.trainer_image,
        "servingImage": images.serving_image,
        "serviceAccounts": {role: identity.email(role) for role in ROLES},
    }


def main(project_root: Path | None = None) -> dict[str, Any]:
    """The Pulumi program: read the stack config once, build, export."""
    outputs = build(from_pulumi(), project_root or PROJECT_ROOT)
    for name, value in outputs.items():
        pulumi.export(name, value)
    return outputs
