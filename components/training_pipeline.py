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
    # The compiled template: a path, or an output that becomes one (compiled once the
    # trainer image's digest is known).
    template_path: pulumi.Input[str]
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if isinstance(self.template_path, str | Path):
            _check_template(self.template_path)


def _check_template(path: str | Path) -> str:
    if not Path(path).is_file():
        raise ValueError(
            f"TrainingPipelineArgs.template_path: {path} does not exist; compile the pipeline first"
        )
    return str(path)


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
        template = pulumi.Output.from_input(args.template_path).apply(_check_template)
        object_name = template.apply(lambda p: template_object_name(Path(p)))
        self.template = gcp.storage.BucketObject(
            self.n("template"),
            bucket=self.bucket.name,
            name=object_name,
            source=template.apply(lambda p: pulumi.FileAsset(p)),
            content_type="application/x-yaml",
            opts=self.child(),
        )
        self.template_uri = pulumi.Output.concat("gs://", self.bucket.name, "/", object_name)
        self.pipeline_root = pulumi.Output.concat("gs://", self.bucket.name, "/runs")
        # Each registered version's artifact directory (the registry copies it here).
        self.model_root = pulumi.Output.concat("gs://", self.bucket.name, "/models")
        self.register_outputs(
            {
                "pipeline_root": self.pipeline_root,
                "template_uri": self.template_uri,
                "model_root": self.model_root,
            }
        )
