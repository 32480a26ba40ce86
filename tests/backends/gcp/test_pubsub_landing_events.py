"""The Pub/Sub landing events at the client boundary: the exact Pull, Acknowledge,
ModifyAckDeadline and Publish requests behind pull / ack / nack (with backoff) /
dead-letter / dead_letters / requeue, each with the policy's timeout and retry."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1 import types

from app.backends import Backends
from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.pubsub_landing_events import PubSubLandingEvents
from app.core.config import CallPolicyConfig, GcsLandingConfig, RuntimeConfig
from app.core.errors import BackendUnavailableError, ConfigError, InvalidInputError, NotFoundError
from app.core.records import MAX_DELIVERIES, LandedObject, RunFailure, redelivery_delay
from tests.support.recording import RecordingClient

SUB = "projects/fraud-mlops-dev/subscriptions/landing-dag"
DEAD_SUB = f"{SUB}-dead-letters"
TOPIC = "projects/fraud-mlops-dev/topics/landing"
DEAD_TOPIC = "projects/fraud-mlops-dev/topics/landing-dead-letters"
POLICY = CallPolicy(timeout=7.0, deadline=0.2, initial=0.01, maximum=0.02)
ATTRS = {
    "bucketId": "fraud-mlops-dev-landing",
    "objectId": "day1.csv",
    "objectGeneration": "1712",
    "eventType": "OBJECT_FINALIZE",
}
DATA = json.dumps(
    {"bucket": "fraud-mlops-dev-landing", "name": "day1.csv", "generation": "1712"}
).encode()
BAD = RunFailure("load_raw", "InvalidInputError", "is not a number", "day1.csv:3:4")
DOWN = RunFailure("load_raw", "BackendUnavailableError", "BigQuery did not answer")


def _received(
    ack_id: str = "ack-1",
    *,
    attributes: dict[str, str] | None = None,
    data: bytes = DATA,
    message_id: str = "m-1",
    attempt: int = 1,
) -> types.ReceivedMessage:
    return types.ReceivedMessage(
        ack_id=ack_id,
        message=types.PubsubMessage(
            data=data, attributes=attributes or ATTRS, message_id=message_id
        ),
        delivery_attempt=attempt,
    )


def _pulls(*batches: list[types.ReceivedMessage]) -> list[types.PullResponse]:
    return [types.PullResponse(received_messages=b) for b in batches] + [types.PullResponse()]


def _events(
    pulls: list[types.PullResponse], *, publish: Any = None
) -> tuple[PubSubLandingEvents, RecordingClient, RecordingClient]:
    subscriber = RecordingClient(
        answers={
            "pull": pulls,
            "acknowledge": None,
            "modify_ack_deadline": None,
            "get_subscription": types.Subscription(
                name=SUB,
                topic=TOPIC,
                dead_letter_policy=types.DeadLetterPolicy(
                    dead_letter_topic=DEAD_TOPIC, max_delivery_attempts=MAX_DELIVERIES
                ),
            ),
        }
    )
    publisher = RecordingClient(
        answers={"publish": publish or types.PublishResponse(message_ids=["p-1"])}
    )
    events = PubSubLandingEvents(
        SUB,
        policy=POLICY,
        subscriber=subscriber,  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
    )
    return events, subscriber, publisher


def _requests(client: RecordingClient, method: str) -> list[Any]:
    return [c.request for c in client.calls if c.method == method]


def test_pull_claims_one_notification_with_timeout_and_retry() -> None:
    events, subscriber, _ = _events(_pulls([_received(attempt=3)]))

    claim = events.pull()

    assert claim is not None
    assert claim.landed == LandedObject(
        "day1.csv", "gs://fraud-mlops-dev-landing/day1.csv", generation=1712
    )
    assert (claim.ack_id, claim.delivery_attempt, claim.event_id) == ("ack-1", 3, "m-1")
    (call,) = subscriber.calls
    assert call.request == {"subscription": SUB, "max_messages": 1}
    assert call.kwargs["timeout"] == 7.0 and call.kwargs["retry"] is not None


def test_pull_nothing_pending_returns_none() -> None:
    events, _, _ = _events([types.PullResponse()])
    assert events.pull() is None


def test_ack_acknowledges_exactly_that_message() -> None:
    events, subscriber, _ = _events(_pulls([_received()]))
    claim = events.pull()
    assert claim is not None

    events.ack(claim)

    assert _requests(subscriber, "acknowledge") == [{"subscription": SUB, "ack_ids": ["ack-1"]}]


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_nack_sets_the_ack_deadline_to_the_backoff(attempt: int) -> None:
    events, subscriber, publisher = _events(_pulls([_received(attempt=attempt)]))
    claim = events.pull()
    assert claim is not None

    events.nack(claim, reason=DOWN, retry_after=redelivery_delay(attempt))

    assert _requests(subscriber, "modify_ack_deadline") == [
        {
            "subscription": SUB,
            "ack_ids": ["ack-1"],
            "ack_deadline_seconds": int(redelivery_delay(attempt)),
        }
    ]
    assert publisher.calls == [] and _requests(subscriber, "acknowledge") == []


def test_nack_at_max_deliveries_publishes_the_dead_letter_with_reason_then_acks() -> None:
    events, subscriber, publisher = _events(_pulls([_received(attempt=MAX_DELIVERIES)]))
    claim = events.pull()
    assert claim is not None

    events.nack(claim, reason=DOWN, retry_after=30.0)

    (publish,) = _requests(publisher, "publish")
    assert publish["topic"] == DEAD_TOPIC
    (message,) = publish["messages"]
    assert message["data"] == DATA
    attributes = message["attributes"]
    assert {k: attributes[k] for k in ATTRS} == ATTRS
    assert attributes["deadLetterErrorClass"] == "BackendUnavailableError"
    assert attributes["deadLetterMessage"] == "BigQuery did not answer"
    assert attributes["deadLetterTask"] == "load_raw"
    assert attributes["deadLetterDeliveryAttempts"] == str(MAX_DELIVERIES)
    assert attributes["landingMessageId"] == "m-1"
    assert _requests(subscriber, "get_subscription") == [{"subscription": SUB}]
    assert _requests(subscriber, "acknowledge") == [{"subscription": SUB, "ack_ids": ["ack-1"]}]
    assert _requests(subscriber, "modify_ack_deadline") == []
    # Published before the ack: a lost ack duplicates a dead letter, never loses one.
    assert subscriber.methods().index("acknowledge") > subscriber.methods().index(
        "get_subscription"
    )


def test_dead_letter_bad_file_at_once_keeps_its_location() -> None:
    events, subscriber, publisher = _events(_pulls([_received()]))
    claim = events.pull()
    assert claim is not None

    events.dead_letter(claim, reason=BAD)

    (publish,) = _requests(publisher, "publish")
    attributes = publish["messages"][0]["attributes"]
    assert attributes["deadLetterLocation"] == "day1.csv:3:4"
    assert attributes["deadLetterDeliveryAttempts"] == "1"
    assert _requests(subscriber, "acknowledge") == [{"subscription": SUB, "ack_ids": ["ack-1"]}]


def test_pull_malformed_notification_dead_letters_it_and_takes_the_next() -> None:
    wrong = {**ATTRS, "eventType": "OBJECT_DELETE"}
    events, subscriber, publisher = _events(
        [
            types.PullResponse(received_messages=[_received("ack-bad", attributes=wrong)]),
            types.PullResponse(received_messages=[_received("ack-2", message_id="m-2")]),
        ]
    )

    claim = events.pull()

    assert claim is not None and claim.ack_id == "ack-2"
    (publish,) = _requests(publisher, "publish")
    attributes = publish["messages"][0]["attributes"]
    assert attributes["deadLetterErrorClass"] == "InvalidInputError"
    assert attributes["deadLetterLocation"] == "eventType"
    assert _requests(subscriber, "acknowledge") == [{"subscription": SUB, "ack_ids": ["ack-bad"]}]


def _dead(ack_id: str, message_id: str, reason: RunFailure | None = BAD) -> types.ReceivedMessage:
    attributes = dict(ATTRS)
    if reason is not None:
        attributes.update(
            deadLetterTask=reason.task,
            deadLetterErrorClass=reason.error_class,
            deadLetterMessage=reason.message,
            deadLetterLocation=reason.location or "",
            deadLetterDeliveryAttempts="1",
            deadLetterAt=f"2026-01-01T00:00:0{message_id[-1]}+00:00",
            landingMessageId="m-orig",
        )
    else:
        attributes["CloudPubSubDeadLetterSourceDeliveryCount"] = "5"
    return _received(ack_id, attributes=attributes, message_id=message_id)


def test_dead_letters_lists_the_dead_letter_subscription_and_releases_every_message() -> None:
    events, subscriber, _ = _events(_pulls([_dead("d-1", "x-1"), _dead("d-2", "x-2", None)]))

    letters = {d.event_id: d for d in events.dead_letters()}
    first, second = letters["x-1"], letters["x-2"]

    assert (first.event_id, first.reason, first.delivery_attempts) == ("x-1", BAD, 1)
    assert first.landed.name == "day1.csv" and first.landed.generation == 1712
    assert second.reason.error_class == "MaxDeliveryAttemptsExceeded"
    assert second.delivery_attempts == 5
    assert _requests(subscriber, "pull") == [{"subscription": DEAD_SUB, "max_messages": 100}] * 2
    assert _requests(subscriber, "modify_ack_deadline") == [
        {"subscription": DEAD_SUB, "ack_ids": ["d-1", "d-2"], "ack_deadline_seconds": 0}
    ]
    assert _requests(subscriber, "acknowledge") == []


def test_requeue_one_republishes_the_notification_as_it_was_and_acks_the_dead_letter() -> None:
    events, subscriber, publisher = _events(_pulls([_dead("d-1", "x-1"), _dead("d-2", "x-2")]))

    assert events.requeue("x-2") == ["x-2"]

    (publish,) = _requests(publisher, "publish")
    assert publish == {"topic": TOPIC, "messages": [{"data": DATA, "attributes": ATTRS}]}
    assert _requests(subscriber, "acknowledge") == [{"subscription": DEAD_SUB, "ack_ids": ["d-2"]}]
    assert _requests(subscriber, "modify_ack_deadline") == [
        {"subscription": DEAD_SUB, "ack_ids": ["d-1"], "ack_deadline_seconds": 0}
    ]


def test_requeue_all_republishes_every_dead_letter() -> None:
    events, subscriber, publisher = _events(_pulls([_dead("d-1", "x-1"), _dead("d-2", "x-2")]))

    assert events.requeue() == ["x-1", "x-2"]

    assert [r["topic"] for r in _requests(publisher, "publish")] == [TOPIC, TOPIC]
    assert _requests(subscriber, "acknowledge") == [
        {"subscription": DEAD_SUB, "ack_ids": ["d-1"]},
        {"subscription": DEAD_SUB, "ack_ids": ["d-2"]},
    ]


def test_requeue_unknown_id_raises_not_found_and_releases_what_it_leased() -> None:
    events, subscriber, publisher = _events(_pulls([_dead("d-1", "x-1")]))

    with pytest.raises(NotFoundError):
        events.requeue("nope")

    assert publisher.calls == []
    assert _requests(subscriber, "modify_ack_deadline") == [
        {"subscription": DEAD_SUB, "ack_ids": ["d-1"], "ack_deadline_seconds": 0}
    ]


def test_dead_letter_without_a_dead_letter_policy_is_a_config_error() -> None:
    events, subscriber, _ = _events(_pulls([_received()]))
    subscriber.answers["get_subscription"] = types.Subscription(name=SUB, topic=TOPIC)
    claim = events.pull()
    assert claim is not None

    with pytest.raises(ConfigError, match="no dead-letter policy"):
        events.dead_letter(claim, reason=BAD)


def test_pull_service_unavailable_past_the_deadline_is_backend_unavailable() -> None:
    events, _, _ = _events([])
    events._subscriber.answers["pull"] = gexc.ServiceUnavailable("down")  # type: ignore[attr-defined]

    with pytest.raises(BackendUnavailableError, match="retry deadline"):
        events.pull()


def test_recover_and_discover_leave_redelivery_to_pubsub() -> None:
    events, subscriber, _ = _events([])
    assert events.recover() == 0 and events.discover(settle_seconds=0) == []
    assert subscriber.calls == []


def test_subscription_not_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        PubSubLandingEvents("landing-dag", policy=POLICY, subscriber=object(), publisher=object())  # type: ignore[arg-type]


def _configured(
    pulls: list[types.PullResponse],
) -> tuple[PubSubLandingEvents, RecordingClient, RecordingClient]:
    """As the composition root builds it from the stack's runtime config: both topics
    named, so nothing needs GetSubscription (which roles/pubsub.subscriber lacks)."""
    events, subscriber, publisher = _events(pulls)
    configured = PubSubLandingEvents(
        SUB,
        policy=POLICY,
        subscriber=subscriber,  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        dead_letter_subscription=DEAD_SUB,
        topic=TOPIC,
        dead_letter_topic=DEAD_TOPIC,
    )
    return configured, subscriber, publisher


def test_dead_letter_landed_publishes_the_rebuilt_notification_with_its_reason() -> None:
    events, subscriber, publisher = _configured([])
    landed = LandedObject("day1.csv", "gs://fraud-mlops-dev-landing/day1.csv", generation=1712)

    event_id = events.dead_letter_landed(landed, reason=BAD)

    assert event_id == "p-1"
    (call,) = publisher.calls
    (message,) = call.request["messages"]
    at = message["attributes"].pop("deadLetterAt")
    assert datetime.fromisoformat(at).tzinfo is not None
    assert call.request == {
        "topic": DEAD_TOPIC,
        "messages": [
            {
                "data": b"",
                "attributes": {
                    **ATTRS,
                    "payloadFormat": "NONE",
                    "deadLetterTask": "load_raw",
                    "deadLetterErrorClass": "InvalidInputError",
                    "deadLetterMessage": "is not a number",
                    "deadLetterLocation": "day1.csv:3:4",
                    "deadLetterDeliveryAttempts": "1",
                },
            }
        ],
    }
    assert call.kwargs["timeout"] == 7.0 and call.kwargs["retry"] is not None
    # Nothing was held, so nothing is acked; the topics came from the config.
    assert subscriber.calls == []


def test_dead_letter_landed_then_listed_and_requeued_as_gcs_sent_it() -> None:
    events, _, publisher = _configured([])
    landed = LandedObject("day1.csv", "gs://fraud-mlops-dev-landing/day1.csv", generation=1712)
    events.dead_letter_landed(landed, reason=DOWN)
    (published,) = publisher.calls[0].request["messages"]
    dead = types.ReceivedMessage(
        ack_id="d-1",
        message=types.PubsubMessage(
            data=published["data"], attributes=published["attributes"], message_id="x-1"
        ),
    )
    listing, subscriber, republisher = _configured(_pulls([dead]))

    (letter,) = listing.dead_letters()
    assert (letter.event_id, letter.landed, letter.reason) == ("x-1", landed, DOWN)
    listing, subscriber, republisher = _configured(_pulls([dead]))
    assert listing.requeue("x-1") == ["x-1"]
    (again,) = _requests(republisher, "publish")
    assert again == {
        "topic": TOPIC,
        "messages": [{"data": b"", "attributes": {**ATTRS, "payloadFormat": "NONE"}}],
    }
    assert _requests(subscriber, "get_subscription") == []


@pytest.mark.parametrize(
    "landed",
    [
        LandedObject("day1.csv", "file:///tmp/landing/day1.csv", generation=1712),
        LandedObject("day1.csv", "gs://fraud-mlops-dev-landing/day1.csv", generation=0),
        LandedObject("day1.csv", "gs://fraud-mlops-dev-landing/other.csv", generation=1712),
    ],
)
def test_dead_letter_landed_not_a_gcs_generation_is_invalid_input(landed: LandedObject) -> None:
    events, _, publisher = _configured([])

    with pytest.raises(InvalidInputError):
        events.dead_letter_landed(landed, reason=BAD)
    assert publisher.calls == []


def test_dead_letter_long_reason_is_cut_to_the_attribute_limit() -> None:
    events, _, publisher = _configured([])
    landed = LandedObject("day1.csv", "gs://fraud-mlops-dev-landing/day1.csv", generation=1712)
    long = RunFailure("load_raw", "BackendUnavailableError", "é" * 2000)

    events.dead_letter_landed(landed, reason=long)

    attributes = publisher.calls[0].request["messages"][0]["attributes"]
    assert len(attributes["deadLetterMessage"].encode()) <= 1024
    assert attributes["deadLetterMessage"].endswith("...")


def test_nack_at_max_deliveries_with_configured_topics_makes_no_get_subscription() -> None:
    events, subscriber, publisher = _configured(_pulls([_received(attempt=MAX_DELIVERIES)]))
    claim = events.pull()
    assert claim is not None

    events.nack(claim, reason=DOWN, retry_after=30.0)

    assert [r["topic"] for r in _requests(publisher, "publish")] == [DEAD_TOPIC]
    assert _requests(subscriber, "get_subscription") == []


def test_from_config_takes_the_dead_letter_path_and_the_gcp_call_policy(tmp_path: Path) -> None:
    calls = CallPolicyConfig(timeout_seconds=3.0, deadline_seconds=9.0)
    section = GcsLandingConfig(
        bucket="landing",
        subscription=SUB,
        topic=TOPIC,
        dead_letter_topic=DEAD_TOPIC,
        dead_letter_subscription="projects/fraud-mlops-dev/subscriptions/elsewhere",
    )
    cfg = RuntimeConfig.local(tmp_path).model_copy(update={"landing": section, "gcp_calls": calls})

    events = PubSubLandingEvents.from_config(section, Backends(cfg))

    assert events.subscription == SUB
    assert events.dead_letter_subscription == "projects/fraud-mlops-dev/subscriptions/elsewhere"
    assert events._topics == (TOPIC, DEAD_TOPIC)
    assert events._policy == CallPolicy.from_config(calls)


def test_from_config_without_the_dead_letter_path_uses_the_convention(tmp_path: Path) -> None:
    section = GcsLandingConfig(bucket="landing", subscription=SUB)
    cfg = RuntimeConfig.local(tmp_path).model_copy(update={"landing": section})

    events = PubSubLandingEvents.from_config(section, Backends(cfg))

    assert events.dead_letter_subscription == DEAD_SUB
    assert events._topics is None  # read from the subscription's dead-letter policy


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"dead_letter_topic": "landing-dead-letters"}, "dead_letter_topic"),
        ({"dead_letter_subscription": "projects/p/topics/t"}, "dead_letter_subscription"),
        ({"topic": TOPIC, "dead_letter_topic": TOPIC}, "differ from topic"),
        ({"dead_letter_subscription": SUB}, "differ from subscription"),
    ],
)
def test_gcs_landing_config_bad_dead_letter_path_raises_naming_it(
    fields: dict[str, Any], match: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=match):
        GcsLandingConfig(bucket="landing", subscription=SUB, **fields)
