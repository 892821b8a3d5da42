"""Delivers embedded-bus messages to Service Bus-triggered functions with peek-lock semantics:
complete on success, abandon on failure (the delivery count rises; the bus dead-letters after the
entity's max delivery count), several messages in flight per function."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

from devhost.indexing import BusSpec
from devhost.invocations import invoke

log = logging.getLogger("devhost.bus")

RECEIVE_WAIT_SECONDS = 1.0


def to_function_message(received: Any) -> ServiceBusMessage:
    """The embedded bus's message as the azure.functions input object the worker would pass."""
    properties = dict(received.application_properties)
    return ServiceBusMessage(
        body=json.dumps(received.body, separators=(",", ":")).encode(),
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


class BusWorker(threading.Thread):
    def __init__(self, spec: BusSpec, bus: Any, stop: threading.Event, index: int) -> None:
        super().__init__(name=f"bus:{spec.name}:{index}", daemon=True)
        self.spec = spec
        self.bus = bus
        self.stop = stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                messages = self.bus.receive(self.spec.entity_path, max_messages=1,
                                            timeout=RECEIVE_WAIT_SECONDS)
            except Exception as error:
                log.warning("%s: receive failed: %r", self.spec.name, error)
                self.stop.wait(1.0)
                continue
            for message in messages:
                self._deliver(message)

    def _deliver(self, message: Any) -> None:
        try:
            invoke(self.spec.name, self.spec.call,
                   {self.spec.arg_name: to_function_message(message)},
                   f"(message {message.message_id}, delivery {message.delivery_count})")
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
