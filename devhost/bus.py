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
from collections.abc import Iterator
from contextlib import contextmanager
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


@dataclass
class _Renewal:
    bus: Any
    message: Any
    deadline: float  # monotonic: the renewal budget ends here
    due: float  # monotonic: when the lock is renewed next


class LockRenewals:
    """Renews the locks of the messages being handled, at half their remaining duration, until
    each is done or its renewal budget ends: one thread for every message in flight (a thread
    per message had cost two thread switches and a thread start per delivery)."""

    def __init__(self) -> None:
        self._active: dict[int, _Renewal] = {}
        self._changed = threading.Condition()
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None

    @contextmanager
    def renewing(self, bus: Any, message: Any, budget: float) -> Iterator[None]:
        """Keeps ``message``'s lock while the body runs, for at most ``budget`` seconds."""
        if budget <= 0:
            yield
            return
        now = time.monotonic()
        due = now + _half_of_what_remains(message.locked_until.timestamp())
        key = self._add(_Renewal(bus, message, now + budget, due))
        try:
            yield
        finally:
            self._remove(key)

    def _add(self, renewal: _Renewal) -> int:
        with self._changed:
            key = id(renewal)
            self._active[key] = renewal
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="bus-lock-renewals")
                self._thread.start()
            if renewal.due < self._wake_at:
                self._changed.notify()
            return key

    def _remove(self, key: int) -> None:
        with self._changed:
            self._active.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [r for r in self._active.values() if r.due <= now]
                if not due:
                    self._wake_at = min((r.due for r in self._active.values()),
                                        default=float("inf"))
                    self._changed.wait(None if self._wake_at == float("inf")
                                       else self._wake_at - now)
                    self._wake_at = float("inf")
                    continue
            for renewal in due:
                self._renew(renewal)

    def _renew(self, renewal: _Renewal) -> None:
        key = id(renewal)
        with self._changed:
            if key not in self._active:
                return  # settled meanwhile
            if time.monotonic() >= renewal.deadline:
                del self._active[key]
                return
        try:
            locked_until = renewal.bus.renew_lock(renewal.message).timestamp()
        except Exception as error:  # lost: the message will be redelivered
            with self._changed:
                still_handled = self._active.pop(key, None) is not None
            if still_handled:  # not merely settled while this renewal ran
                log.warning("could not renew the lock of %s: %r", renewal.message.message_id,
                            error)
            return
        with self._changed:
            renewal.due = time.monotonic() + _half_of_what_remains(locked_until)


def _half_of_what_remains(locked_until: float) -> float:
    return max(0.05, (locked_until - time.time()) / 2)


_shared_renewals = LockRenewals()


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
            with _shared_renewals.renewing(self.bus, message, renewal):
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
