"""Training pipeline plumbing: the pipeline-root bucket, the compiled KFP template
uploaded under a content-hashed name, and the Vertex AI endpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.base import Component
from components.buckets import private_bucket


@dataclass(frozen=True)
class PipelineArgs:
    project: str
    region: str
    bucket_name: str
    template_path: Path
    endpoint_id: str
    # bq://project.dataset for the endpoint's request/response log; None: no logging
    request_log_dataset_uri: pulumi.Input[str] | None
    request_log_sampling_rate: float
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not self.template_path.is_file():
            raise ValueError(
                f"PipelineArgs.template_path: {self.template_path} does not exist; "
                "compile the pipeline first"
            )
        if not self.endpoint_id.isdigit() or self.endpoint_id.startswith("0"):
            raise ValueError("PipelineArgs.endpoint_id: Vertex wants digits, no leading zero")
        if not 0.0 < self.request_log_sampling_rate <= 1.0:
            raise ValueError("PipelineArgs.request_log_sampling_rate: must be in (0, 1]")


def template_object_name(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"templates/fraud-training-{digest}.yaml"


class Pipeline(Component):
    def __init__(
        self, name: str, args: PipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Pipeline", name, opts)
        self.bucket = private_bucket(
            self.n("root"),
            project=args.project,
            name=args.bucket_name,
            location=args.region,
            labels=args.labels,
            kms_key_name=args.kms_key_name,
            deletion_protection=args.deletion_protection,
            opts=self.child(),
            depends_on=args.kms_ready,
        )
        # A new compile gets a new object, so a run in flight keeps its template.
        object_name = template_object_name(args.template_path)
        self.template = gcp.storage.BucketObject(
            self.n("template"),
            bucket=self.bucket.name,
            name=object_name,
            source=pulumi.FileAsset(str(args.template_path)),
            content_type="application/x-yaml",
            opts=self.child(),
        )
        self.template_uri = pulumi.Output.concat("gs://", self.bucket.name, "/", object_name)
        self.pipeline_root = pulumi.Output.concat("gs://", self.bucket.name, "/runs")

        logging = None
        if args.request_log_dataset_uri is not None:
            logging = gcp.vertex.AiEndpointPredictRequestResponseLoggingConfigArgs(
                enabled=True,
                sampling_rate=args.request_log_sampling_rate,
                bigquery_destination=(
                    gcp.vertex.AiEndpointPredictRequestResponseLoggingConfigBigqueryDestinationArgs(
                        output_uri=args.request_log_dataset_uri
                    )
                ),
            )
        self.endpoint = gcp.vertex.AiEndpoint(
            self.n("endpoint"),
            project=args.project,
            location=args.region,
            region=args.region,
            name=args.endpoint_id,
            display_name=f"{name}-endpoint",
            description="Fraud scoring endpoint; the DAG deploys models and splits traffic",
            labels=dict(args.labels),
            encryption_spec=(
                gcp.vertex.AiEndpointEncryptionSpecArgs(kms_key_name=args.kms_key_name)
                if args.kms_key_name
                else None
            ),
            predict_request_response_logging_config=logging,
            # Deployed models and their traffic split belong to the DAG (canary, promote);
            # protected because deleting it takes the live models with it.
            opts=self.child(
                depends_on=args.kms_ready,
                ignore_changes=["trafficSplit"],
                protect=args.deletion_protection,
            ),
        )
        self.register_outputs(
            {
                "pipeline_root": self.pipeline_root,
                "template_uri": self.template_uri,
                "endpoint_id": self.endpoint.name,
            }
        )
