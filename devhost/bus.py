"""Delivers embedded-bus messages to Service Bus-triggered functions as the Service Bus extension
does: peek-lock, complete on success, abandon on failure (the bus dead-letters after the entity's
max delivery count), ``maxConcurrentCalls`` messages in flight per function (host.json), and the
lock renewed while a function runs (``maxAutoLockRenewalDuration``), so a slow function never has
its message delivered a second time meanwhile."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

from devhost.indexing import BusSpec
from devhost.invocations import invoke

log = logging.getLogger("devhost.bus")

RECEIVE_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class BusOptions:
    """The Service Bus extension's settings from host.json (``extensions.serviceBus``)."""

    max_concurrent_calls: int = 16
    max_auto_lock_renewal: float = 300.0  # seconds; 0 turns renewal off

    @classmethod
    def from_host_json(cls, host_json: dict[str, Any]) -> BusOptions:
        section = host_json.get("extensions", {}).get("serviceBus", {})
        renewal = section.get("maxAutoLockRenewalDuration")
        return cls(
            max_concurrent_calls=int(section.get("maxConcurrentCalls", cls.max_concurrent_calls)),
            max_auto_lock_renewal=_timespan(renewal) if renewal else cls.max_auto_lock_renewal,
        )


def _timespan(value: str) -> float:
    hours, minutes, seconds = str(value).split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def to_function_message(received: Any) -> ServiceBusMessage:
    """The embedded bus's message as the azure.functions input object the worker would pass."""
    properties = dict(received.application_properties)
    body = received.body if isinstance(received.body, bytes) else \
        json.dumps(received.body, separators=(",", ":")).encode()
    return ServiceBusMessage(
        body=body,
        message_id=received.message_id,
        subject=received.subject,
        label=received.subject,
        content_type="application/json",
        correlation_id=received.correlation_id,
        application_properties=properties,
        user_properties=properties,
        delivery_count=received.delivery_count,
        enqueued_time_utc=received.enqueued_time,
        locked_until=datetime.fromtimestamp(received.locked_until, UTC)
        if isinstance(received.locked_until, (int, float)) else received.locked_until,
        lock_token=str(received.lock_token),
        sequence_number=received.sequence_number,
        trigger_metadata={"MessageId": received.message_id,
                          "DeliveryCount": received.delivery_count},
    )


class LockRenewer:
    """Renews a message's lock at half its duration until stopped or the renewal budget ends."""

    def __init__(self, bus: Any, message: Any, budget: float) -> None:
        self._bus = bus
        self._message = message
        self._deadline = time.monotonic() + budget
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lock:{message.message_id}")
        self.renewals = 0

    def __enter__(self) -> LockRenewer:
        if time.monotonic() < self._deadline:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        locked_until = self._message.locked_until.timestamp()
        while not self._stop.is_set():
            interval = max(0.05, (locked_until - time.time()) / 2)
            if self._stop.wait(interval) or time.monotonic() >= self._deadline:
                return
            try:
                locked_until = self._bus.renew_lock(self._message).timestamp()
                self.renewals += 1
            except Exception as error:  # lost: the message will be redelivered
                log.warning("could not renew the lock of %s: %r", self._message.message_id,
                            error)
                return


class BusWorker(threading.Thread):
    def __init__(self, spec: BusSpec, bus: Any, stop: threading.Event, index: int,
                 options: BusOptions | None = None) -> None:
        super().__init__(name=f"bus:{spec.name}:{index}", daemon=True)
        self.spec = spec
        self.bus = bus
        self.stop = stop
        self.options = options or BusOptions()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                messages = self.bus.receive(self.spec.entity_path, max_messages=1,
                                            timeout=RECEIVE_WAIT_SECONDS)
            except Exception as error:
                if self.stop.is_set():
                    return
                log.warning("%s: receive failed: %r", self.spec.name, error)
                self.stop.wait(1.0)
                continue
            for message in messages:
                self._deliver(message)
        close = getattr(self.bus, "close", None)
        if close is not None and getattr(self.bus, "renews_locks_itself", False):
            close()  # this worker's own receiver

    def _deliver(self, message: Any) -> None:
        detail = f"(message {message.message_id}, delivery {message.delivery_count})"
        # An inbox over the Service Bus SDK renews its locks itself (AutoLockRenewer).
        renewal = 0.0 if getattr(self.bus, "renews_locks_itself", False) else \
            self.options.max_auto_lock_renewal
        try:
            with LockRenewer(self.bus, message, renewal):
                invoke(self.spec.name, self.spec.call,
                       {self.spec.arg_name: to_function_message(message)}, detail)
        except Exception as error:
            log.warning("%s: message %s failed (delivery %d): %r; abandoning", self.spec.name,
                        message.message_id, message.delivery_count, error)
            self._settle(self.bus.abandon, message)
            return
        self._settle(self.bus.complete, message)

    def _settle(self, settle: Any, message: Any) -> None:
        try:
            settle(message)
        except Exception as error:  # lock lost: the message is redelivered, handlers are idempotent
            log.warning("%s: settling %s failed: %r", self.spec.name, message.message_id, error)
