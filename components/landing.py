"""The landing zone: a private bucket whose OBJECT_FINALIZE events reach the DAG
through Pub/Sub, and the dead-letter path of those events.

A landing event whose run failed for good is published to the dead-letter topic with
its reason (``app/backends/gcp/pubsub_landing_events.py``) and kept on the topic's
subscription until ``fraud-mlops retry`` republishes it to the landing topic. The
landing subscription's own dead-letter policy forwards a message Pub/Sub delivered
``MAX_DELIVERIES`` times without an ack to the same topic, as Pub/Sub's service agent,
which therefore publishes on the dead-letter topic and subscribes to the landing
subscription.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from app.core.records import FIRST_REDELIVERY_SECONDS, MAX_DELIVERIES, MAX_REDELIVERY_SECONDS
from components.base import Component
from components.buckets import private_bucket

# Pub/Sub's limits: resource names of 3-255 characters, retention of at most 7 days.
_MAX_NAME = 255
_WEEK = "604800s"


def dead_letter_name(name: str) -> str:
    """The dead-letter topic of topic ``name``, or the dead-letter subscription of
    subscription ``name``: the convention the app's backend assumes too
    (``dead_letter_subscription_for``)."""
    return f"{name}-dead-letters"


@dataclass(frozen=True)
class LandingArgs:
    project: str
    location: str
    bucket_name: str
    topic_name: str
    subscription_name: str
    deletion_protection: bool
    # ``serviceAccount:`` of Pub/Sub's service agent (ServiceAgents.member("pubsub")):
    # it forwards undeliverable messages to the dead-letter topic.
    pubsub_agent: pulumi.Input[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    # Resources that must exist before anything encrypted with the key (its grants).
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not 3 <= len(self.bucket_name) <= 63:
            raise ValueError(f"LandingArgs.bucket_name: {self.bucket_name!r} is 3-63 characters")
        if self.topic_name == self.subscription_name:
            raise ValueError("LandingArgs.subscription_name: must differ from topic_name")
        for field_name, name in (
            ("topic_name", self.topic_name),
            ("subscription_name", self.subscription_name),
        ):
            if not 3 <= len(dead_letter_name(name)) <= _MAX_NAME:
                raise ValueError(
                    f"LandingArgs.{field_name}: {name!r} with its dead-letter suffix is not "
                    f"3-{_MAX_NAME} characters"
                )
        if isinstance(self.pubsub_agent, str) and not self.pubsub_agent.startswith(
            "serviceAccount:"
        ):
            raise ValueError(
                f"LandingArgs.pubsub_agent: {self.pubsub_agent!r} is not serviceAccount:<email>"
            )


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
        # Where landing events that will not be delivered again wait, with their reason,
        # for `fraud-mlops retry`; encrypted and protected like the landing topic.
        self.dead_letter_topic = gcp.pubsub.Topic(
            self.n("dead-letter-topic"),
            project=args.project,
            name=dead_letter_name(args.topic_name),
            labels=dict(args.labels),
            kms_key_name=args.kms_key_name,
            opts=self.child(depends_on=args.kms_ready, protect=args.deletion_protection),
        )
        self.dead_letter_subscription = gcp.pubsub.Subscription(
            self.n("dead-letters"),
            project=args.project,
            name=dead_letter_name(args.subscription_name),
            topic=self.dead_letter_topic.id,
            labels=dict(args.labels),
            # Listing leases every dead letter and releases it at once; a requeue acks it
            # right after republishing it.
            ack_deadline_seconds=60,
            # Pub/Sub keeps an unacknowledged message at most 7 days: a dead letter not
            # retried within a week is gone (its reason is in the DAG run's logs too).
            message_retention_duration=_WEEK,
            # Never expire for inactivity: dead letters are rare, and must wait for retry.
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            # Deleting it drops every dead letter not yet retried.
            opts=self.child(protect=args.deletion_protection),
        )
        self.subscription = gcp.pubsub.Subscription(
            self.n("dag"),
            project=args.project,
            name=args.subscription_name,
            topic=self.topic.id,
            labels=dict(args.labels),
            # A load can take minutes; the DAG acks only once the file is in BigQuery.
            ack_deadline_seconds=600,
            message_retention_duration=_WEEK,
            # Never expire for inactivity: a quiet week must not delete the trigger.
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            # A message delivered MAX_DELIVERIES times without an ack is forwarded to the
            # dead-letter topic, as the local queue does; Pub/Sub counts the deliveries.
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=self.dead_letter_topic.id,
                max_delivery_attempts=MAX_DELIVERIES,
            ),
            # A nacked message comes back after Pub/Sub's backoff, in the bounds of
            # app.core.records.redelivery_delay (1 s doubling to 30 s).
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=f"{FIRST_REDELIVERY_SECONDS:g}s",
                maximum_backoff=f"{MAX_REDELIVERY_SECONDS:g}s",
            ),
            # Deleting it drops every unacknowledged landing notification.
            opts=self.child(protect=args.deletion_protection),
        )
        # Pub/Sub forwards a message as its service agent: it must publish on the
        # dead-letter topic and acknowledge on the source subscription, or the policy
        # silently forwards nothing.
        self.agent_publisher = gcp.pubsub.TopicIAMMember(
            self.n("pubsub-agent-publisher"),
            project=args.project,
            topic=self.dead_letter_topic.name,
            role="roles/pubsub.publisher",
            member=args.pubsub_agent,
            opts=self.child(),
        )
        self.agent_subscriber = gcp.pubsub.SubscriptionIAMMember(
            self.n("pubsub-agent-subscriber"),
            project=args.project,
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=args.pubsub_agent,
            opts=self.child(),
        )

        self.register_outputs(
            {
                "bucket": self.bucket.name,
                "topic": self.topic.id,
                "subscription": self.subscription.id,
                "dead_letter_topic": self.dead_letter_topic.id,
                "dead_letter_subscription": self.dead_letter_subscription.id,
            }
        )
