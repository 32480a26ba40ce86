"""The landing zone: a private bucket whose OBJECT_FINALIZE events reach the DAG
through Pub/Sub."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.base import Component
from components.buckets import private_bucket


@dataclass(frozen=True)
class LandingArgs:
    project: str
    location: str
    bucket_name: str
    topic_name: str
    subscription_name: str
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    # Resources that must exist before anything encrypted with the key (its grants).
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not 3 <= len(self.bucket_name) <= 63:
            raise ValueError(f"LandingArgs.bucket_name: {self.bucket_name!r} is 3-63 characters")
        if self.topic_name == self.subscription_name:
            raise ValueError("LandingArgs.subscription_name: must differ from topic_name")


class Landing(Component):
    def __init__(
        self, name: str, args: LandingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Landing", name, opts)

        self.bucket = private_bucket(
            self.n("bucket"),
            project=args.project,
            name=args.bucket_name,
            location=args.location,
            labels=args.labels,
            kms_key_name=args.kms_key_name,
            deletion_protection=args.deletion_protection,
            opts=self.child(),
            depends_on=args.kms_ready,
        )
        self.topic = gcp.pubsub.Topic(
            self.n("topic"),
            project=args.project,
            name=args.topic_name,
            labels=dict(args.labels),
            kms_key_name=args.kms_key_name,
            opts=self.child(depends_on=args.kms_ready, protect=args.deletion_protection),
        )
        # GCS publishes notifications as its project service agent; it needs
        # publish rights on this one topic before the notification can exist.
        gcs_agent = gcp.storage.get_project_service_account_output(
            project=args.project, opts=self.lookup()
        )
        self.gcs_agent_email = gcs_agent.email_address
        self.publisher = gcp.pubsub.TopicIAMMember(
            self.n("gcs-publisher"),
            project=args.project,
            topic=self.topic.name,
            role="roles/pubsub.publisher",
            member=gcs_agent.email_address.apply(lambda e: f"serviceAccount:{e}"),
            opts=self.child(),
        )
        self.notification = gcp.storage.Notification(
            self.n("finalize"),
            bucket=self.bucket.name,
            topic=self.topic.id,
            payload_format="JSON_API_V1",
            event_types=["OBJECT_FINALIZE"],
            opts=self.child(depends_on=[self.publisher]),
        )
        self.subscription = gcp.pubsub.Subscription(
            self.n("dag"),
            project=args.project,
            name=args.subscription_name,
            topic=self.topic.id,
            labels=dict(args.labels),
            # A load can take minutes; the DAG acks only once the file is in BigQuery.
            ack_deadline_seconds=600,
            message_retention_duration="604800s",
            # Never expire for inactivity: a quiet week must not delete the trigger.
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            # Deleting it drops every unacknowledged landing notification.
            opts=self.child(protect=args.deletion_protection),
        )

        self.register_outputs(
            {
                "bucket": self.bucket.name,
                "topic": self.topic.id,
                "subscription": self.subscription.id,
            }
        )
