"""Where training runs keep their files: the pipeline-root bucket, and the compiled
KFP template uploaded to it under a content-hashed name."""

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
class TrainingPipelineArgs:
    project: str
    region: str
    bucket_name: str
    template_path: Path
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not self.template_path.is_file():
            raise ValueError(
                f"TrainingPipelineArgs.template_path: {self.template_path} does not exist; "
                "compile the pipeline first"
            )


def template_object_name(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"templates/fraud-training-{digest}.yaml"


class TrainingPipeline(Component):
    def __init__(
        self, name: str, args: TrainingPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("TrainingPipeline", name, opts)
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
        self.register_outputs(
            {"pipeline_root": self.pipeline_root, "template_uri": self.template_uri}
        )
