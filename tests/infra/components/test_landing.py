from __future__ import annotations

import pytest

from app.backends.gcp.pubsub_landing_events import dead_letter_subscription_for
from app.core.records import MAX_DELIVERIES, redelivery_delay
from components.landing import Landing, LandingArgs, dead_letter_name
from stacks.mocks import PROJECT_NUMBER, MockRun, Registration
from tests.infra.conftest import assert_component_shape, run_component

PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
TOPIC = "gcp:pubsub/topic:Topic"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"


def _args(**overrides: object) -> LandingArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        location="us-central1",
        bucket_name="fraud-mlops-test-landing",
        topic_name="landing",
        subscription_name="landing-dag",
        deletion_protection=False,
        pubsub_agent=PUBSUB_AGENT,
    )
    base.update(overrides)
    return LandingArgs(**base)  # type: ignore[arg-type]


def _named(run: MockRun, type_token: str, name: str) -> Registration:
    (found,) = [r for r in run.of_type(type_token) if r.inputs["name"] == name]
    return found


def test_landing_default_args_creates_private_versioned_bucket() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    assert_component_shape(run, "landing", "fraud-mlops:gcp:Landing")
    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert bucket.inputs["name"] == "fraud-mlops-test-landing"
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.inputs["versioning"] == {"enabled": True}


def test_landing_notification_is_object_finalize_to_topic_after_agent_grant() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    (notification,) = run.of_type("gcp:storage/notification:Notification")
    (grant,) = [r for r in run.of_type(TOPIC_IAM) if r.name.endswith("gcs-publisher")]
    topic = _named(run, TOPIC, "landing")
    assert notification.inputs["eventTypes"] == ["OBJECT_FINALIZE"]
    assert notification.inputs["topic"] == "projects/fraud-mlops-test/topics/landing"
    assert grant.inputs["role"] == "roles/pubsub.publisher"
    assert grant.inputs["topic"] == topic.inputs["name"]
    assert grant.inputs["member"] == (
        f"serviceAccount:service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
    )
    # The publish grant must exist before GCS validates the notification.
    assert grant.urn in notification.depends_on


def test_landing_subscription_reads_topic_and_never_expires() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    sub = _named(run, SUBSCRIPTION, "landing-dag")
    assert sub.inputs["topic"] == "projects/fraud-mlops-test/topics/landing"
    assert sub.inputs["expirationPolicy"] == {"ttl": ""}


def test_landing_subscription_dead_letters_after_max_deliveries_with_backoff() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    sub = _named(run, SUBSCRIPTION, "landing-dag")
    assert sub.inputs["deadLetterPolicy"] == {
        "deadLetterTopic": "projects/fraud-mlops-test/topics/landing-dead-letters",
        "maxDeliveryAttempts": MAX_DELIVERIES,
    }
    assert MAX_DELIVERIES == 5  # Pub/Sub takes 5-100
    # The local queue's backoff bounds (1 s doubling to 30 s).
    assert sub.inputs["retryPolicy"] == {
        "minimumBackoff": f"{redelivery_delay(1):g}s",
        "maximumBackoff": f"{redelivery_delay(MAX_DELIVERIES + 10):g}s",
    }
    assert sub.inputs["retryPolicy"] == {"minimumBackoff": "1s", "maximumBackoff": "30s"}


def test_landing_dead_letter_topic_and_subscription_follow_the_app_convention() -> None:
    labels = {"app": "fraud-mlops"}
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: Landing("landing", _args(labels=labels, kms_key_name=key)))

    assert_component_shape(run, "landing", "fraud-mlops:gcp:Landing")
    topic = _named(run, TOPIC, "landing-dead-letters")
    sub = _named(run, SUBSCRIPTION, dead_letter_subscription_for("landing-dag"))
    assert dead_letter_name("landing-dag") == dead_letter_subscription_for("landing-dag")
    # Labelled and encrypted as the landing topic is.
    assert (topic.inputs["labels"], topic.inputs["kmsKeyName"]) == (labels, key)
    assert sub.inputs["topic"] == "projects/fraud-mlops-test/topics/landing-dead-letters"
    assert sub.inputs["messageRetentionDuration"] == "604800s"  # Pub/Sub's maximum
    assert sub.inputs["expirationPolicy"] == {"ttl": ""}
    assert sub.inputs["labels"] == labels
    assert "deadLetterPolicy" not in sub.inputs


def test_landing_pubsub_agent_may_forward_from_the_subscription_to_the_dead_letter_topic() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    (publish,) = [r for r in run.of_type(TOPIC_IAM) if r.inputs["member"] == PUBSUB_AGENT]
    (consume,) = run.of_type("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember")
    assert (publish.inputs["topic"], publish.inputs["role"]) == (
        "landing-dead-letters",
        "roles/pubsub.publisher",
    )
    assert (consume.inputs["subscription"], consume.inputs["role"], consume.inputs["member"]) == (
        "landing-dag",
        "roles/pubsub.subscriber",
        PUBSUB_AGENT,
    )


def test_landing_outputs_name_the_dead_letter_topic_and_subscription() -> None:
    outputs: dict[str, str] = {}

    def build() -> None:
        landing = Landing("landing", _args())
        landing.dead_letter_topic.id.apply(lambda v: outputs.update(topic=v))
        landing.dead_letter_subscription.id.apply(lambda v: outputs.update(sub=v))

    run_component(build)

    assert outputs == {
        "topic": "projects/fraud-mlops-test/topics/landing-dead-letters",
        "sub": "projects/fraud-mlops-test/subscriptions/landing-dag-dead-letters",
    }


def test_landing_kms_key_encrypts_bucket_and_topic() -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: Landing("landing", _args(kms_key_name=key)))

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": key}
    assert [t.inputs["kmsKeyName"] for t in run.of_type(TOPIC)] == [key, key]


def test_landing_deletion_protection_protects_bucket_and_blocks_force_destroy() -> None:
    run = run_component(lambda: Landing("landing", _args(deletion_protection=True)))

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert bucket.protect
    assert bucket.inputs["forceDestroy"] is False
    # The landing and dead-letter topics and subscriptions: deleting one drops messages.
    queues = run.of_type(TOPIC) + run.of_type(SUBSCRIPTION)
    assert len(queues) == 4 and all(r.protect for r in queues)


def test_landing_without_deletion_protection_leaves_topic_and_subscription_deletable() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    assert [r.name for r in run.registrations if r.protect] == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"bucket_name": "ab"}, "bucket_name"),
        ({"subscription_name": "landing"}, "subscription_name"),
        ({"topic_name": "t" * 250}, "topic_name"),
        ({"subscription_name": "s" * 250}, "subscription_name"),
        ({"pubsub_agent": "service-1@gcp-sa-pubsub.iam.gserviceaccount.com"}, "pubsub_agent"),
    ],
)
def test_landing_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"LandingArgs.{field}"):
        _args(**overrides).validate()
