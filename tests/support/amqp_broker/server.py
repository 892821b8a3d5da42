"""A small in-process AMQP 1.0 broker for testing the Service Bus publisher over the real wire.

It speaks just enough of what the azure-servicebus SDK (pure-Python ``_pyamqp`` transport) does
when it *sends* with a connection string that carries ``UseDevelopmentEmulator=true``:

* The SDK then connects with plain TCP (no TLS) to the host and port of ``Endpoint=sb://host:port``
  (without the flag it would use TLS on 5671 and drop the port). The SASL layer is still used,
  with mechanism ANONYMOUS: the real credential travels as a CBS token.
* CBS (claims-based security): the SDK attaches a sender and a receiver link to the ``$cbs`` node
  and sends a ``put-token`` request (application properties ``operation``, ``type``, ``name``;
  body = the token; properties.message_id = a UUID). It waits for a reply on its ``$cbs``
  receiver whose ``correlation_id`` equals that message id and whose application property
  ``status-code`` is 2xx. We answer 202 as Service Bus does, after checking the SAS signature
  against the emulator's key, so a wrong connection string fails here as it would in Azure.
* It then attaches a sender link whose target is ``amqps://host:port/<entity>`` and transfers
  messages. ``ServiceBusMessageBatch`` is sent as ONE AMQP message with message-format
  0x80013700 whose body is one data section per message, each holding a complete encoded AMQP
  message. Proton does not expose a transfer's message-format, so a batch is recognised by its
  shape: a body of data sections that each start with an AMQP section descriptor (a JSON or
  text body never starts with a 0x00 byte).
* Every delivery is accepted (disposition ``accepted``, settled), which completes the SDK's
  send, unless ``fail_next_sends`` told us to reject it or detach the link with an error.
* Requests to ``<entity>/$management`` (used only by scheduling and receiving) get a 501 reply.

Design: a single background thread drives proton's protocol engine (``Transport`` +
``Connection`` + ``Collector``) over plain sockets with ``selectors``, instead of proton's
``Container`` reactor. The engine does the AMQP framing and SASL; we own the socket loop, so
stopping is one flag plus a wake-up byte, every socket is closed on exit, and an exception while
handling one connection closes that connection (recorded in ``errors``) instead of killing the
broker thread. All state shared with the test thread sits behind one ``threading.Condition``.

What it proves: the SDK publisher, configured from an emulator-style connection string, opens a
real AMQP connection, authenticates through CBS with a correctly signed SAS token, attaches to
the right entity, splits batches at the Standard tier's 256 KB (what the SDK picks for the
link's advertised max-message-size), and that every field (message id, subject, content type,
correlation id, application properties, body) survives AMQP encoding; and how SDK errors for
rejected deliveries and detached links surface. What it does NOT prove: TLS, Entra ID
(AAD/JWT) tokens, duplicate detection, topic subscriptions/filters, entity existence or sizes,
sessions, receiving, throttling behaviour or anything else of the real Service Bus service or
its emulator.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

from proton import (
    Collector,
    Condition,
    Connection,
    Data,
    Delivery,
    Described,
    Endpoint,
    Event,
    Link,
    Message,
    Transport,
    int32,
    symbol,
    timestamp,
)

# The public, well-known placeholder key and policy of the Service Bus emulator's connection
# string (documented by Microsoft for local development; not a secret).
EMULATOR_KEY_NAME = "RootManageSharedAccessKey"
EMULATOR_KEY = "SAS_KEY_VALUE"

# Service Bus Standard tier: 256 KB per message and per batch. The SDK sizes its batches from
# the max-message-size we advertise on the link.
MAX_MESSAGE_SIZE = 256 * 1024
_LINK_CREDIT = 500
_CBS_NODE = "$cbs"
_SAS_PREFIX = "SharedAccessSignature "
_MANAGEMENT_SUFFIX = "/$management"
# AMQP message section descriptors.
_HEADER, _MESSAGE_ANNOTATIONS, _PROPERTIES, _APPLICATION_PROPERTIES = 0x70, 0x72, 0x73, 0x74
_DATA_SECTION = 0x75
_BODY_SECTIONS = (0x75, 0x76, 0x77)  # data, amqp-sequence, amqp-value


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
    sequence_number: int = 0  # assigned by the broker per entity, from 1
    enqueued_time_utc: datetime = field(default_factory=lambda: datetime.now(UTC))

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class _Failure:
    condition: str
    description: str
    detach: bool


class _Peer:
    """One accepted socket and its proton engine."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport = Transport(Transport.SERVER)
        self.connection = Connection()
        self.collector = Collector()
        self.connection.collect(self.collector)
        self.transport.bind(self.connection)
        sasl = self.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")
        # Bytes of the delivery currently arriving on each receiving link (a transfer can span
        # many frames; reading as it arrives keeps proton's session window open).
        self.partial: dict[str, bytearray] = {}

    @property
    def done(self) -> bool:
        return bool(self.transport.closed)


class AmqpTestBroker:
    """Start with ``with AmqpTestBroker() as broker:``; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._cond = threading.Condition()
        self._received: dict[str, list[ReceivedAmqpMessage]] = {}
        self._failures: list[_Failure] = []
        self._stopping = False
        self.errors: list[BaseException] = []
        self._tokens: list[str] = []  # audiences of accepted CBS tokens, one per put-token
        self._transfers: dict[str, int] = {}  # AMQP transfers (a batch is one) per entity
        self._thread = threading.Thread(target=self._run, name="amqp-test-broker", daemon=True)

    # -- test-facing API --------------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName={EMULATOR_KEY_NAME};"
            f"SharedAccessKey={EMULATOR_KEY};UseDevelopmentEmulator=true"
        )

    def start(self) -> AmqpTestBroker:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._wake_w.close()

    def __enter__(self) -> AmqpTestBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, entity: str) -> list[ReceivedAmqpMessage]:
        with self._cond:
            return list(self._received.get(entity, []))

    def wait_for(self, entity: str, count: int, timeout: float = 10.0) -> list[ReceivedAmqpMessage]:
        """Wait until at least ``count`` messages arrived on ``entity``; all of them, in order."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received.get(entity, [])) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = len(self._received.get(entity, []))
                    raise TimeoutError(f"{entity}: {got} of {count} messages after {timeout}s")
                self._cond.wait(remaining)
            return list(self._received[entity])

    def transfers(self, entity: str) -> int:
        """How many accepted AMQP transfers carried ``entity``'s messages (a batch is one)."""
        with self._cond:
            return self._transfers.get(entity, 0)

    def token_audiences(self) -> list[str]:
        """Audiences of the CBS tokens accepted so far: one per authenticated connection."""
        with self._cond:
            return list(self._tokens)

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self._transfers.clear()
            self._failures.clear()

    def fail_next_sends(
        self,
        n: int = 1,
        condition: str = "com.microsoft:server-busy",
        description: str = "injected by the test broker",
        *,
        detach: bool = False,
    ) -> None:
        """Make the next ``n`` message transfers fail: rejected with ``condition`` or, with
        ``detach=True``, the sending link detached (closed) with that error instead."""
        with self._cond:
            self._failures.extend(_Failure(condition, description, detach) for _ in range(n))

    # -- socket loop ------------------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        peers: dict[socket.socket, _Peer] = {}
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        break
                timeout = self._tick(peers.values())
                for key, mask in selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(selector, peers)
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        self._io(peers[key.fileobj], mask)  # type: ignore[index]
                for peer in list(peers.values()):
                    self._pump(peer)
                    if peer.done:
                        selector.unregister(peer.sock)
                        del peers[peer.sock]
                        peer.sock.close()
                    else:
                        # Read while the engine takes input (not after EOF: that would spin),
                        # write while it has output; with neither it is about to close.
                        want = selectors.EVENT_READ if peer.transport.capacity() > 0 else 0
                        if peer.transport.pending() != 0 or not want:
                            want |= selectors.EVENT_WRITE
                        selector.modify(peer.sock, want, None)
        except BaseException as exc:  # keep it visible to the tests rather than lost in a thread
            self.errors.append(exc)
            raise
        finally:
            for peer in peers.values():
                peer.sock.close()
            selector.close()
            self._listener.close()
            self._wake_r.close()

    def _tick(self, peers: Iterable[_Peer]) -> float:
        """Let proton handle idle timeouts; returns how long select may block."""
        now = time.monotonic()
        timeout = 1.0
        for peer in peers:
            deadline = peer.transport.tick(now)
            if deadline:
                timeout = min(timeout, max(0.0, deadline - now))
        return timeout

    def _accept(self, selector: selectors.BaseSelector, peers: dict[socket.socket, _Peer]) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Peer(sock)
        peers[sock] = peer
        selector.register(sock, selectors.EVENT_READ, None)

    def _io(self, peer: _Peer, mask: int) -> None:
        t = peer.transport
        if mask & selectors.EVENT_READ:
            capacity = t.capacity()
            if capacity > 0:
                try:
                    data = peer.sock.recv(capacity)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data:
                    t.push(data)
                elif data is not None:  # EOF or reset
                    t.close_tail()
        if mask & selectors.EVENT_WRITE:
            self._flush(peer)

    def _flush(self, peer: _Peer) -> None:
        t = peer.transport
        pending = t.pending()
        if pending > 0:
            try:
                t.pop(peer.sock.send(t.peek(pending) or b""))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                t.close_head()
        elif pending < 0:
            t.close_head()

    def _pump(self, peer: _Peer) -> None:
        """Dispatch proton events of one connection, then write what the engine produced."""
        while True:
            event = peer.collector.peek()
            if event is None:
                break
            try:
                self._on_event(peer, event)
            except Exception as exc:
                self.errors.append(exc)
                peer.connection.condition = Condition("amqp:internal-error", repr(exc))
                peer.connection.close()
            peer.collector.pop()
        self._flush(peer)

    # -- AMQP behaviour ---------------------------------------------------------------------

    def _on_event(self, peer: _Peer, event: Event) -> None:
        kind, link = event.type, event.link
        if kind == Event.CONNECTION_REMOTE_OPEN:
            peer.connection.container = "amqp-test-broker"
            peer.connection.open()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            if peer.connection.state & Endpoint.LOCAL_ACTIVE:
                peer.connection.close()
        elif kind == Event.SESSION_REMOTE_OPEN and event.session is not None:
            event.session.open()
        elif kind == Event.SESSION_REMOTE_CLOSE and event.session is not None:
            if event.session.state & Endpoint.LOCAL_ACTIVE:
                event.session.close()
        elif kind == Event.LINK_REMOTE_OPEN and link is not None:
            self._open_link(link)
        elif kind in (Event.LINK_REMOTE_CLOSE, Event.LINK_REMOTE_DETACH) and link is not None:
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.close()
        elif kind == Event.DELIVERY and event.delivery is not None:
            self._on_delivery(peer, event.delivery)

    def _open_link(self, link: Link) -> None:
        # A broker's terminus mirrors what the client asked for.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.is_receiver:
            link.max_message_size = MAX_MESSAGE_SIZE
        link.open()
        if link.is_receiver:
            link.flow(_LINK_CREDIT)

    def _on_delivery(self, peer: _Peer, delivery: Delivery) -> None:
        link = delivery.link
        if link.is_sender:
            # A reply we sent was settled (or acknowledged) by the client: forget it.
            if delivery.updated:
                delivery.settle()
            return
        if not delivery.readable:
            return
        buffer = peer.partial.setdefault(link.name, bytearray())
        chunk = link.recv(delivery.pending)
        if chunk:
            buffer += chunk
        if delivery.partial:
            return
        del peer.partial[link.name]
        link.advance()
        if link.credit < _LINK_CREDIT // 2:
            link.flow(_LINK_CREDIT - link.credit)
        address = link.remote_target.address or ""
        if address == _CBS_NODE:
            self._on_cbs_request(peer, delivery, bytes(buffer))
        elif address.endswith(_MANAGEMENT_SUFFIX):
            self._on_management_request(peer, delivery, bytes(buffer), address)
        else:
            self._on_transfer(delivery, _entity_of(address), bytes(buffer))

    def _on_transfer(self, delivery: Delivery, entity: str, encoded: bytes) -> None:
        with self._cond:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            # Always send the error's info map: azure-servicebus 7.15 indexes error[2] of a
            # rejected outcome, and a missing (trailing null, legal in AMQP) info field makes
            # its callback fail and the send hang past its timeout.
            condition = Condition(
                failure.condition,
                failure.description,
                {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())},
            )
            if failure.detach:
                link = delivery.link
                link.condition = condition
                link.close()
            else:
                delivery.local.condition = condition
                delivery.update(Delivery.REJECTED)
                delivery.settle()
            return
        sections = _decode_sections(encoded)
        items = _batch_items(sections)
        messages = [_decode_sections(item) for item in items] if items else [sections]
        with self._cond:
            queue = self._received.setdefault(entity, [])
            for message in messages:
                queue.append(_to_received(entity, message, len(queue) + 1))
            self._transfers[entity] = self._transfers.get(entity, 0) + 1
            self._cond.notify_all()
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()

    def _on_cbs_request(self, peer: _Peer, delivery: Delivery, encoded: bytes) -> None:
        request = Message()
        request.decode(encoded)
        # The SDK sends some of these as AMQP binary rather than string: compare as text.
        props = _properties_as_text(request)
        token, audience = _as_text(request.body), props.get("name", "")
        status, description = 202, "Accepted"
        if props.get("operation") != "put-token":
            status, description = 400, f"unsupported CBS operation {props.get('operation')!r}"
        elif str(token).startswith(_SAS_PREFIX):
            # Checked by content: the SDK labels SAS tokens "jwt" as well.
            error = _check_sas(str(token), str(audience))
            if error:
                status, description = 401, error
        # Anything else is an Entra ID (JWT) token: accepted unchecked.
        if status == 202:
            with self._cond:
                self._tokens.append(str(audience))
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self._reply(
            peer,
            _CBS_NODE,
            request,
            {"status-code": int32(status), "status-description": description},
        )

    def _on_management_request(
        self, peer: _Peer, delivery: Delivery, encoded: bytes, address: str
    ) -> None:
        request = Message()
        request.decode(encoded)
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        operation = _properties_as_text(request).get("operation")
        self._reply(
            peer,
            address,
            request,
            {
                "statusCode": int32(501),
                "statusDescription": f"the test broker does not implement {operation!r}",
                "errorCondition": symbol("com.microsoft:not-implemented"),
            },
        )

    def _reply(self, peer: _Peer, node: str, request: Message, properties: dict[str, Any]) -> None:
        """Send a management/CBS response on the client's receiving link from ``node``."""
        sender = _find_sender(peer.connection, node, request.reply_to)
        if sender is None:
            raise RuntimeError(f"no reply link attached for {node}")
        response = Message(
            id=str(uuid.uuid4()),
            correlation_id=request.id,
            properties=properties,
            body=None,
        )
        sender.send(response)  # Message.send creates the delivery, writes it and advances


def _find_sender(connection: Connection, node: str, reply_to: str | None) -> Link | None:
    """The local sender attached from ``node`` (matching ``reply_to`` when the client set one)."""
    fallback = None
    link = connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        if link.is_sender and link.remote_source.address == node:
            if reply_to is None or link.remote_target.address == reply_to:
                return link
            fallback = link
        link = link.next(Endpoint.LOCAL_ACTIVE)
    return fallback


def _entity_of(address: str) -> str:
    """``amqps://host:port/orders`` (as the SDK addresses an entity) → ``orders``."""
    parsed = urlparse(address)
    path = parsed.path if parsed.scheme else address
    return path.strip("/")


def _check_sas(token: str, audience: str) -> str | None:
    """Validate a ``SharedAccessSignature sr=..&sig=..&se=..&skn=..`` token; None when valid."""
    fields = {k: v[0] for k, v in parse_qs(token.removeprefix(_SAS_PREFIX)).items()}
    if fields.get("skn") != EMULATOR_KEY_NAME:
        return f"unknown key name {fields.get('skn')!r}"
    resource, expiry = fields.get("sr", ""), fields.get("se", "0")
    if resource != audience:
        return f"token resource {resource!r} does not match audience {audience!r}"
    if int(expiry) < time.time():
        return "token expired"
    to_sign = f"{quote_plus(resource)}\n{expiry}".encode()
    expected = base64.b64encode(hmac.new(EMULATOR_KEY.encode(), to_sign, hashlib.sha256).digest())
    if not hmac.compare_digest(expected.decode(), fields.get("sig", "")):
        return "invalid signature"
    return None


def _plain(value: Any) -> Any:
    """Detach a decoded value from proton's buffers (binary comes back as a memoryview into
    the ``Data`` object, which dies with it) and turn symbols into plain strings."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool | timestamp):
        return int(value)  # proton's int32, ulong, ... compare equal anyway; keep them plain
    return value


def _decode_sections(encoded: bytes) -> list[tuple[int, Any]]:
    """Split an encoded AMQP message into its (section descriptor, value) pairs."""
    sections: list[tuple[int, Any]] = []
    view = memoryview(encoded)
    while view:
        data = Data()
        consumed = data.decode(bytes(view))
        data.rewind()
        data.next()
        described = data.get_object()
        if not isinstance(described, Described) or not isinstance(described.descriptor, int):
            raise ValueError(f"not an AMQP message section: {described!r}")
        sections.append((int(described.descriptor), _plain(described.value)))
        view = view[consumed:]
    return sections


def _batch_items(sections: list[tuple[int, Any]]) -> list[bytes] | None:
    """The encoded messages inside a batch envelope, or None when it is no batch."""
    body = [(d, v) for d, v in sections if d in _BODY_SECTIONS]
    if not body or any(d != _DATA_SECTION for d, _ in body):
        return None
    items: list[bytes] = [v for _, v in body]
    # Each item of a batch is an encoded message: it starts with a described section (0x00).
    if any(len(item) < 3 or item[0] != 0x00 for item in items):
        return None
    return items


def _as_text(value: Any) -> Any:
    if isinstance(value, memoryview | bytes):
        return bytes(value).decode("utf-8", "replace")
    return value


def _properties_as_text(message: Message) -> dict[str, Any]:
    raw: dict[Any, Any] = message.properties or {}
    return {str(k): _as_text(v) for k, v in raw.items()}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_received(
    entity: str, sections: list[tuple[int, Any]], sequence_number: int
) -> ReceivedAmqpMessage:
    by_kind: dict[int, Any] = {}
    body = bytearray()
    for descriptor, value in sections:
        if descriptor == _DATA_SECTION:
            body += value
        elif descriptor in _BODY_SECTIONS:  # amqp-value / amqp-sequence: not what the SDK sends
            body += value.encode() if isinstance(value, str) else json.dumps(value).encode()
        else:
            by_kind[descriptor] = value
    # properties: message-id, user-id, to, subject, reply-to, correlation-id, content-type,
    # content-encoding, absolute-expiry-time, creation-time, group-id, ... (trailing nulls cut)
    props = list(by_kind.get(_PROPERTIES, [])) + [None] * 13
    header = list(by_kind.get(_HEADER, [])) + [None] * 5
    return ReceivedAmqpMessage(
        entity=entity,
        message_id=_text(props[0]),
        subject=_text(props[3]),
        content_type=_text(props[6]),
        correlation_id=_text(props[5]),
        application_properties=dict(by_kind.get(_APPLICATION_PROPERTIES, {})),
        body=bytes(body),
        session_id=_text(props[10]),
        reply_to=_text(props[4]),
        to=_text(props[2]),
        time_to_live_ms=None if header[2] is None else int(header[2]),
        message_annotations=dict(by_kind.get(_MESSAGE_ANNOTATIONS, {})),
        sequence_number=sequence_number,
    )
