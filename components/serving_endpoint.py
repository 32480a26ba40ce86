"""The Vertex AI endpoint that serves the fraud model, with its request/response
log to BigQuery. Which models it serves, and their traffic split, belong to the
DAG's deploy step, not to the stack."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.base import Component

# CreateEndpointRequest.endpoint_id: a number of at most 9 digits with no leading
# zero, or a letter followed by up to 62 of [a-z0-9-] that does not end in "-".
# (The provider's docs still say "at most 10 digits"; the API rejects 10.)
ENDPOINT_ID = re.compile(r"[1-9][0-9]{0,8}|[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_endpoint_id(value: str) -> bool:
    """Whether Vertex AI accepts ``value`` as the id of a new endpoint."""
    return ENDPOINT_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class ServingEndpointArgs:
    project: str
    region: str
    endpoint_id: str
    # bq://project.dataset for the endpoint's request/response log; None: no logging
    request_log_dataset_uri: pulumi.Input[str] | None
    request_log_sampling_rate: float
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not is_endpoint_id(self.endpoint_id):
            raise ValueError(
                f"ServingEndpointArgs.endpoint_id: {self.endpoint_id!r} is not a Vertex "
                "endpoint id (1-9 digits, no leading zero; or [a-z][a-z0-9-]{0,62}, "
                "not ending in '-')"
            )
        if not 0.0 < self.request_log_sampling_rate <= 1.0:
            raise ValueError("ServingEndpointArgs.request_log_sampling_rate: must be in (0, 1]")


class ServingEndpoint(Component):
    def __init__(
        self, name: str, args: ServingEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("ServingEndpoint", name, opts)
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
            display_name=self.n("endpoint"),
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
        self.register_outputs({"endpoint_id": self.endpoint.name})
