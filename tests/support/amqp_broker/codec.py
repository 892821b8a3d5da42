"""AMQP message encoding for the test broker: taking apart what senders send (single messages
and ``ServiceBusMessageBatch`` envelopes) and re-encoding stored messages for delivery with the
broker-owned header and annotations Service Bus adds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proton import Data, Described, symbol, timestamp, uint, ulong

from tests.support.amqp_broker.entities import StoredMessage

# AMQP message section descriptors, in the order a message carries them.
HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS = 0x70, 0x71, 0x72
PROPERTIES, APPLICATION_PROPERTIES, DATA_SECTION, FOOTER = 0x73, 0x74, 0x75, 0x78
BODY_SECTIONS = (0x75, 0x76, 0x77)  # data, amqp-sequence, amqp-value

# What the SDK reads from a received message (azure.servicebus._common.constants).
SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"


@dataclass(frozen=True)
class ReceivedAmqpMessage:
    """One message as the broker received it (fields named after Service Bus' names)."""

    entity: str
    message_id: str | None
    subject: str | None
    content_type: str | None
    correlation_id: str | None
    application_properties: dict[str, Any]
    body: bytes
    session_id: str | None = None
    reply_to: str | None = None
    to: str | None = None
    time_to_live_ms: int | None = None
    message_annotations: dict[str, Any] = field(default_factory=dict)
    sequence_number: int = 0  # position in what arrived on the address, from 1
    enqueued_time_utc: datetime = field(default_factory=lambda: datetime.now(UTC))

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Section:
    descriptor: int
    raw: bytes  # the section exactly as encoded
    value: Any  # decoded, proton types kept (symbol, ulong, ...) so it re-encodes the same


def split_sections(encoded: bytes) -> list[Section]:
    """Split an encoded AMQP message into its sections."""
    sections: list[Section] = []
    view = memoryview(encoded)
    while view:
        raw = bytes(view)
        data = Data()
        consumed = data.decode(raw)
        data.rewind()
        data.next()
        described = data.get_object()
        if not isinstance(described, Described) or not isinstance(described.descriptor, int):
            raise ValueError(f"not an AMQP message section: {described!r}")
        value = _detached(described.value)
        sections.append(Section(int(described.descriptor), raw[:consumed], value))
        view = view[consumed:]
    return sections


def batch_items(sections: list[Section]) -> list[bytes] | None:
    """The encoded messages inside a batch envelope, or None when it is no batch.

    Proton does not expose a transfer's message-format (0x80013700 marks a batch), so a batch is
    recognised by its shape: data sections that each hold a complete encoded message, i.e. start
    with a described section (0x00); a JSON or text body never starts with a 0x00 byte."""
    body = [s for s in sections if s.descriptor in BODY_SECTIONS]
    if not body or any(s.descriptor != DATA_SECTION for s in body):
        return None
    items: list[bytes] = [bytes(s.value) for s in body]
    if any(len(item) < 3 or item[0] != 0x00 for item in items):
        return None
    return items


def message_id_of(sections: list[Section]) -> str | None:
    props = _section_list(sections, PROPERTIES, 1)
    return _text(plain(props[0]))


def to_received(entity: str, sections: list[Section], sequence_number: int) -> ReceivedAmqpMessage:
    by_kind: dict[int, Any] = {}
    body = bytearray()
    for section in sections:
        value = plain(section.value)
        if section.descriptor == DATA_SECTION:
            body += value
        elif section.descriptor in BODY_SECTIONS:  # amqp-value/-sequence: not what the SDK sends
            body += value.encode() if isinstance(value, str) else json.dumps(value).encode()
        else:
            by_kind[section.descriptor] = value
    # properties: message-id, user-id, to, subject, reply-to, correlation-id, content-type,
    # content-encoding, absolute-expiry-time, creation-time, group-id, ... (trailing nulls cut)
    props = list(by_kind.get(PROPERTIES, [])) + [None] * 13
    header = list(by_kind.get(HEADER, [])) + [None] * 5
    return ReceivedAmqpMessage(
        entity=entity,
        message_id=_text(props[0]),
        subject=_text(props[3]),
        content_type=_text(props[6]),
        correlation_id=_text(props[5]),
        application_properties=dict(by_kind.get(APPLICATION_PROPERTIES, {})),
        body=bytes(body),
        session_id=_text(props[10]),
        reply_to=_text(props[4]),
        to=_text(props[2]),
        time_to_live_ms=None if header[2] is None else int(header[2]),
        message_annotations=dict(by_kind.get(MESSAGE_ANNOTATIONS, {})),
        sequence_number=sequence_number,
    )


def encode_for_delivery(message: StoredMessage, locked_until: float | None) -> bytes:
    """The stored message as a receiver gets it: the sender's properties, application
    properties and body, plus the header (delivery count) and annotations Service Bus owns, and
    the dead-letter reason/description as application properties once dead-lettered."""
    sections = split_sections(message.payload)
    header = _section_list(sections, HEADER, 5)
    header[4] = uint(message.delivery_count)
    annotations: dict[Any, Any] = dict(_section_value(sections, MESSAGE_ANNOTATIONS) or {})
    annotations[SEQUENCE_NUMBER] = message.sequence_number
    annotations[ENQUEUED_TIME] = timestamp(round(message.enqueued_time * 1000))
    if locked_until is not None:
        annotations[LOCKED_UNTIL] = timestamp(round(locked_until * 1000))
    out = [_encode_section(HEADER, header), _encode_section(MESSAGE_ANNOTATIONS, annotations)]
    out += [s.raw for s in sections if s.descriptor == PROPERTIES]
    if message.dead_letter_reason is None and message.dead_letter_description is None:
        out += [s.raw for s in sections if s.descriptor == APPLICATION_PROPERTIES]
    else:
        app: dict[Any, Any] = dict(_section_value(sections, APPLICATION_PROPERTIES) or {})
        for key, text in (
            (DEAD_LETTER_REASON, message.dead_letter_reason),
            (DEAD_LETTER_DESCRIPTION, message.dead_letter_description),
        ):
            if text is not None:
                app[key] = text
        out.append(_encode_section(APPLICATION_PROPERTIES, app))
    # Delivery annotations were for the hop into the broker: not passed on.
    out += [s.raw for s in sections if s.descriptor in (*BODY_SECTIONS, FOOTER)]
    return b"".join(out)


def plain(value: Any) -> Any:
    """A decoded value as plain Python: symbols as str, proton's int types as int."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool | timestamp):
        return int(value)  # proton's int32, ulong, ... compare equal anyway; keep them plain
    return value


def as_text(value: Any) -> Any:
    if isinstance(value, memoryview | bytes):
        return bytes(value).decode("utf-8", "replace")
    return value


def _detached(value: Any) -> Any:
    """Detach a decoded value from proton's buffers: binary comes back as a memoryview into the
    ``Data`` object, which dies with it."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_detached(k): _detached(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_detached(v) for v in value]
    if isinstance(value, Described):
        return Described(value.descriptor, _detached(value.value))
    return value


def _section_value(sections: list[Section], descriptor: int) -> Any:
    return next((s.value for s in sections if s.descriptor == descriptor), None)


def _section_list(sections: list[Section], descriptor: int, size: int) -> list[Any]:
    """A list-valued section (header, properties) padded with nulls to ``size`` fields."""
    fields = list(_section_value(sections, descriptor) or [])
    return fields + [None] * (size - len(fields))


def _encode_section(descriptor: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(descriptor), value))
    encoded: bytes = data.encode()
    return encoded


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
