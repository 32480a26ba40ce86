"""The GCP landing events: the landing bucket's OBJECT_FINALIZE notifications, pulled
from their Pub/Sub subscription (:class:`app.core.ports.LandingEvents`).

The queue operations map onto Pub/Sub's own, with nothing pretended:

- ``pull``: one message from the landing subscription; its ``delivery_attempt`` is
  Pub/Sub's own count (kept only when the subscription has a dead-letter policy; 1
  otherwise). A message that names no object (malformed, another event type) is the
  message's fault: dead-lettered at once with the reason, never handed to a run.
- ``ack``: ``Acknowledge``.
- ``nack(reason, retry_after)``: ``ModifyAckDeadline`` to ``retry_after`` seconds, which
  is exactly when Pub/Sub redelivers it (the backoff); at ``MAX_DELIVERIES`` it is
  dead-lettered instead.
- ``dead_letter``: ``Publish`` to the dead-letter topic (the subscription's
  ``dead_letter_policy`` topic) with the notification's own attributes and data plus
  the reason, then ``Acknowledge`` the original. Published first: a lost ack gives a
  duplicate dead letter, never a lost one. Pub/Sub's policy also forwards a message
  after its ``max_delivery_attempts`` by itself, without a reason; those are listed too.
- ``dead_letter_landed``: ``Publish`` to the dead-letter topic of a notification rebuilt
  from the object (its bucket, name and generation attributes, as GCS writes them, with
  no payload) plus the reason: the DAG's failure callback, for a run whose message
  Composer's trigger acked when it pulled it.
- ``dead_letters``: the messages on the dead-letter topic's subscription, pulled and
  released at once (``ModifyAckDeadline`` 0): listing never consumes one.
- ``requeue``: ``Publish`` to the landing topic again (the notification as it was), then
  ``Acknowledge`` on the dead-letter subscription; unknown ids raise NotFoundError.
- ``discover``: nothing; GCS announces every finalized object itself.
- ``recover``: nothing to do; Pub/Sub redelivers a dead consumer's message when its ack
  deadline passes.

The topics come from the runtime config (the stack exports them); without them, from
the subscription's own ``GetSubscription`` (which needs ``pubsub.subscriptions.get``,
more than ``roles/pubsub.subscriber`` grants). The clients are made on first use, so
building the role makes no call and needs no credentials.

Every call has the policy's timeout and retry deadline (:mod:`app.backends.gcp.calls`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Self

from google.pubsub_v1 import PublisherClient, SubscriberClient

from app.backends.gcp.calls import CallPolicy, seam
from app.backends.gcp.gcs_landing import landed_from_notification
from app.core.config import GcsLandingConfig
from app.core.errors import ConfigError, InvalidInputError, NotFoundError
from app.core.ports import Services
from app.core.records import MAX_DELIVERIES, DeadLetter, LandedObject, LandingClaim, RunFailure

_FINALIZE = "OBJECT_FINALIZE"

# The reason rides on the dead letter as attributes (Pub/Sub attributes are strings).
_REASON = {
    "task": "deadLetterTask",
    "error_class": "deadLetterErrorClass",
    "message": "deadLetterMessage",
    "location": "deadLetterLocation",
}
_ATTEMPTS = "deadLetterDeliveryAttempts"
_AT = "deadLetterAt"
_ORIGINAL_ID = "landingMessageId"
# What Pub/Sub's own dead-letter policy writes on a message it forwards.
_POLICY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
# Pub/Sub's bounds for an ack deadline, and for an attribute value (bytes).
_MIN_DEADLINE, _MAX_DEADLINE = 0, 600
_MAX_ATTRIBUTE = 1024
_LIST_BATCH = 100


def dead_letter_subscription_for(subscription: str) -> str:
    """The convention the stack names the dead-letter topic's subscription by."""
    return f"{subscription}-dead-letters"


class PubSubLandingEvents:
    """:class:`app.core.ports.LandingEvents` on the landing subscription."""

    def __init__(
        self,
        subscription: str,
        *,
        policy: CallPolicy,
        subscriber: SubscriberClient | None = None,
        publisher: PublisherClient | None = None,
        dead_letter_subscription: str | None = None,
        topic: str | None = None,
        dead_letter_topic: str | None = None,
    ) -> None:
        parts = subscription.split("/")
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "subscriptions":
            raise ConfigError(
                f"landing.subscription {subscription!r} is not projects/<p>/subscriptions/<s>"
            )
        self._subscriber_client = subscriber
        self._publisher_client = publisher
        self._lock = threading.Lock()
        self._subscription = subscription
        self._dead_subscription = dead_letter_subscription or dead_letter_subscription_for(
            subscription
        )
        self._policy = policy
        self._topics: tuple[str, str] | None = (
            (topic, dead_letter_topic) if topic and dead_letter_topic else None
        )
        # Messages pulled and not yet settled, by ack id: a dead letter republishes them.
        self._held: dict[str, Any] = {}

    @classmethod
    def from_config(cls, section: GcsLandingConfig, backends: Services) -> Self:
        return cls(
            section.subscription,
            policy=CallPolicy.from_config(backends.config.gcp_calls),
            dead_letter_subscription=section.dead_letter_subscription,
            topic=section.topic,
            dead_letter_topic=section.dead_letter_topic,
        )

    @property
    def subscription(self) -> str:
        return self._subscription

    @property
    def dead_letter_subscription(self) -> str:
        return self._dead_subscription

    @property
    def _subscriber(self) -> SubscriberClient:
        with self._lock:
            if self._subscriber_client is None:
                with seam("create the Pub/Sub subscriber client"):
                    self._subscriber_client = SubscriberClient()
            return self._subscriber_client

    @property
    def _publisher(self) -> PublisherClient:
        with self._lock:
            if self._publisher_client is None:
                with seam("create the Pub/Sub publisher client"):
                    self._publisher_client = PublisherClient()
            return self._publisher_client

    def _call(self) -> dict[str, Any]:
        return {"timeout": self._policy.timeout, "retry": self._policy.retry()}

    def _topics_of_subscription(self) -> tuple[str, str]:
        """(landing topic, dead-letter topic): as configured, else as the subscription
        itself says."""
        if self._topics is None:
            with seam(f"read {self._subscription}"):
                sub = self._subscriber.get_subscription(
                    request={"subscription": self._subscription}, **self._call()
                )
            dead_topic = sub.dead_letter_policy.dead_letter_topic
            if not dead_topic:
                raise ConfigError(
                    f"{self._subscription} has no dead-letter policy; failed landings would "
                    "have nowhere to go"
                )
            self._topics = (sub.topic, dead_topic)
        return self._topics

    # -- delivery ----------------------------------------------------------------------

    def discover(self, *, settle_seconds: float = 0.0) -> list[LandedObject]:
        return []  # GCS publishes every OBJECT_FINALIZE itself

    def recover(self) -> int:
        return 0  # Pub/Sub redelivers a dead consumer's message once its deadline passes

    def pull(self, only: LandedObject | None = None) -> LandingClaim | None:
        """One message; ``only`` is not selectable on Pub/Sub, so a message for another
        object is released at once for its own consumer."""
        while True:
            with seam(f"pull from {self._subscription}"):
                response = self._subscriber.pull(
                    request={"subscription": self._subscription, "max_messages": 1},
                    **self._call(),
                )
            if not response.received_messages:
                return None
            received = response.received_messages[0]
            message = received.message
            claim_attempt = max(int(received.delivery_attempt or 0), 1)
            try:
                landed = landed_from_notification(dict(message.attributes), bytes(message.data))
            except InvalidInputError as exc:
                # The message's own fault: no run could use it.
                bad = LandingClaim(
                    received.ack_id, _unknown(message), claim_attempt, message.message_id
                )
                self._dead_letter_message(
                    bad,
                    message,
                    RunFailure.from_dict({"task": "notification", **exc.to_dict()}),
                )
                continue
            claim = LandingClaim(
                ack_id=received.ack_id,
                landed=landed,
                delivery_attempt=claim_attempt,
                event_id=message.message_id,
            )
            if only is not None and (landed.name, landed.generation) != (
                only.name,
                only.generation,
            ):
                self._modify_deadline(self._subscription, [claim.ack_id], 0)
                return None
            self._held[claim.ack_id] = message
            return claim

    def ack(self, claim: LandingClaim) -> None:
        self._ack(self._subscription, [claim.ack_id])
        self._held.pop(claim.ack_id, None)

    def nack(self, claim: LandingClaim, *, reason: RunFailure, retry_after: float) -> None:
        if claim.delivery_attempt >= MAX_DELIVERIES:
            self.dead_letter(claim, reason=reason)
            return
        self._modify_deadline(self._subscription, [claim.ack_id], _deadline(retry_after))
        self._held.pop(claim.ack_id, None)

    def dead_letter(self, claim: LandingClaim, *, reason: RunFailure) -> None:
        message = self._held.pop(claim.ack_id, None)
        if message is None:
            raise NotFoundError(f"{claim.ack_id!r} is not a message this consumer holds")
        self._dead_letter_message(claim, message, reason)

    def _dead_letter_message(self, claim: LandingClaim, message: Any, reason: RunFailure) -> None:
        _, dead_topic = self._topics_of_subscription()
        attributes = {
            **_original_attributes(message.attributes),
            _ORIGINAL_ID: message.message_id,
            **_reason_attributes(reason, claim.delivery_attempt),
        }
        self._publish(dead_topic, bytes(message.data), attributes)
        self._ack(self._subscription, [claim.ack_id])

    def dead_letter_landed(self, landed: LandedObject, *, reason: RunFailure) -> str:
        """Publish ``landed``'s notification to the dead-letter topic, as GCS announced
        it (its attributes; no payload, ``NONE``) with the reason: a requeue republishes
        exactly that, which the DAG reads like any notification. Returns its message id."""
        _, dead_topic = self._topics_of_subscription()
        bucket, _, name = landed.uri.removeprefix("gs://").partition("/")
        if not landed.uri.startswith("gs://") or name != landed.name or not landed.generation:
            raise InvalidInputError(
                f"{landed.uri!r} generation {landed.generation} is not a landed GCS object",
                location="uri",
            )
        attributes = {
            "bucketId": bucket,
            "objectId": landed.name,
            "objectGeneration": str(landed.generation),
            "eventType": _FINALIZE,
            "payloadFormat": "NONE",
            **_reason_attributes(reason, 1),
        }
        ids = self._publish(dead_topic, b"", attributes)
        return ids[0] if ids else ""

    # -- dead letters --------------------------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        letters = []
        leased = list(self._lease_dead_letters())
        try:
            for received in leased:
                letters.append(_dead_letter(received))
        finally:
            self._release([r.ack_id for r in leased])
        return sorted(letters, key=lambda d: d.dead_lettered_at)

    def requeue(self, event_id: str | None = None) -> list[str]:
        landing_topic, _ = self._topics_of_subscription()
        leased = list(self._lease_dead_letters())
        chosen = [r for r in leased if event_id is None or r.message.message_id == event_id]
        others = [r.ack_id for r in leased if r not in chosen]
        try:
            if event_id is not None and not chosen:
                raise NotFoundError(f"no dead-lettered landing event {event_id!r}")
            requeued = []
            for received in chosen:
                message = received.message
                # The notification as GCS sent it: a fresh delivery count on the landing
                # subscription, and nothing of its dead letter.
                self._publish(
                    landing_topic, bytes(message.data), _original_attributes(message.attributes)
                )
                self._ack(self._dead_subscription, [received.ack_id])
                requeued.append(message.message_id)
            return requeued
        finally:
            self._release(others)

    def _lease_dead_letters(self) -> Iterator[Any]:
        """Every message on the dead-letter subscription, leased until released."""
        seen: set[str] = set()
        while True:
            with seam(f"pull from {self._dead_subscription}"):
                response = self._subscriber.pull(
                    request={"subscription": self._dead_subscription, "max_messages": _LIST_BATCH},
                    **self._call(),
                )
            fresh = [r for r in response.received_messages if r.message.message_id not in seen]
            if not fresh:
                return
            for received in fresh:
                seen.add(received.message.message_id)
                yield received

    def _release(self, ack_ids: list[str]) -> None:
        if ack_ids:
            self._modify_deadline(self._dead_subscription, ack_ids, 0)

    # -- calls ---------------------------------------------------------------------------

    def _ack(self, subscription: str, ack_ids: list[str]) -> None:
        with seam(f"acknowledge on {subscription}"):
            self._subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": ack_ids}, **self._call()
            )

    def _modify_deadline(self, subscription: str, ack_ids: list[str], seconds: int) -> None:
        with seam(f"modify the ack deadline on {subscription}"):
            self._subscriber.modify_ack_deadline(
                request={
                    "subscription": subscription,
                    "ack_ids": ack_ids,
                    "ack_deadline_seconds": seconds,
                },
                **self._call(),
            )

    def _publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> list[str]:
        with seam(f"publish to {topic}"):
            response = self._publisher.publish(
                request={
                    "topic": topic,
                    "messages": [{"data": data, "attributes": dict(attributes)}],
                },
                **self._call(),
            )
        return [str(i) for i in getattr(response, "message_ids", None) or []]


def _reason_attributes(reason: RunFailure, delivery_attempts: int) -> dict[str, str]:
    """The dead letter's own attributes: the reason, how often it was delivered, when."""
    return {
        _ATTEMPTS: str(delivery_attempts),
        _AT: datetime.now(UTC).isoformat(),
        **{attr: _bounded(str(getattr(reason, key) or "")) for key, attr in _REASON.items()},
    }


def _bounded(value: str) -> str:
    """At most Pub/Sub's 1024 bytes per attribute value (a long error message would
    fail the publish), cut on a character boundary."""
    encoded = value.encode("utf-8")
    if len(encoded) <= _MAX_ATTRIBUTE:
        return value
    return encoded[: _MAX_ATTRIBUTE - 3].decode("utf-8", errors="ignore") + "..."


def _deadline(retry_after: float) -> int:
    return min(max(math.ceil(retry_after), _MIN_DEADLINE), _MAX_DEADLINE)


def _original_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    ours = {*_REASON.values(), _ATTEMPTS, _AT, _ORIGINAL_ID}
    # Pub/Sub's own forwarding attributes (CloudPubSubDeadLetter*) are not the notification's.
    return {
        k: v
        for k, v in dict(attributes).items()
        if k not in ours and not k.startswith("CloudPubSubDeadLetter")
    }


def _unknown(message: Any) -> LandedObject:
    """What a malformed notification names, as far as it names anything."""
    name = str(dict(message.attributes).get("objectId") or "")
    bucket = str(dict(message.attributes).get("bucketId") or "")
    return LandedObject(name=name, uri=f"gs://{bucket}/{name}" if bucket else "")


def _dead_letter(received: Any) -> DeadLetter:
    message = received.message
    attributes = dict(message.attributes)
    try:
        landed = landed_from_notification(_original_attributes(attributes), b"")
    except InvalidInputError:
        landed = _unknown(message)
    if _REASON["error_class"] in attributes:
        reason = RunFailure.from_dict(
            {key: attributes.get(attr) or None for key, attr in _REASON.items()}
        )
    else:
        # Forwarded by the subscription's own dead-letter policy: Pub/Sub keeps no reason.
        reason = RunFailure(
            task="delivery",
            error_class="MaxDeliveryAttemptsExceeded",
            message="forwarded by the subscription's dead-letter policy without a reason",
        )
    published = message.publish_time
    return DeadLetter(
        event_id=message.message_id,
        landed=landed,
        delivery_attempts=int(attributes.get(_ATTEMPTS) or attributes.get(_POLICY_COUNT) or 0),
        reason=reason,
        dead_lettered_at=attributes.get(_AT)
        or (published.isoformat() if hasattr(published, "isoformat") else str(published or "")),
    )
