from __future__ import annotations

import pytest

from components.landing import Landing, LandingArgs
from stacks.mocks import PROJECT_NUMBER
from tests.infra.conftest import assert_component_shape, run_component


def _args(**overrides: object) -> LandingArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        location="us-central1",
        bucket_name="fraud-mlops-test-landing",
        topic_name="landing",
        subscription_name="landing-dag",
        deletion_protection=False,
    )
    base.update(overrides)
    return LandingArgs(**base)  # type: ignore[arg-type]


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
    (grant,) = run.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    (topic,) = run.of_type("gcp:pubsub/topic:Topic")
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

    (sub,) = run.of_type("gcp:pubsub/subscription:Subscription")
    assert sub.inputs["name"] == "landing-dag"
    assert sub.inputs["topic"] == "projects/fraud-mlops-test/topics/landing"
    assert sub.inputs["expirationPolicy"] == {"ttl": ""}


def test_landing_kms_key_encrypts_bucket_and_topic() -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: Landing("landing", _args(kms_key_name=key)))

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    (topic,) = run.of_type("gcp:pubsub/topic:Topic")
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": key}
    assert topic.inputs["kmsKeyName"] == key


def test_landing_deletion_protection_protects_bucket_and_blocks_force_destroy() -> None:
    run = run_component(lambda: Landing("landing", _args(deletion_protection=True)))

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    (topic,) = run.of_type("gcp:pubsub/topic:Topic")
    (subscription,) = run.of_type("gcp:pubsub/subscription:Subscription")
    assert bucket.protect
    assert bucket.inputs["forceDestroy"] is False
    assert (topic.protect, subscription.protect) == (True, True)


def test_landing_without_deletion_protection_leaves_topic_and_subscription_deletable() -> None:
    run = run_component(lambda: Landing("landing", _args()))

    assert [r.name for r in run.registrations if r.protect] == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"bucket_name": "ab"}, "bucket_name"),
        ({"subscription_name": "landing"}, "subscription_name"),
    ],
)
def test_landing_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"LandingArgs.{field}"):
        _args(**overrides).validate()
