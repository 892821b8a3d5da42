"""A small in-process AMQP 1.0 broker for testing Service Bus code over the real wire.

It speaks what the azure-servicebus SDK (pure-Python ``_pyamqp`` transport) does with a
connection string that carries ``UseDevelopmentEmulator=true``, both to send and to receive.

Connecting and authenticating:

* The SDK connects with plain TCP (no TLS) to the host and port of ``Endpoint=sb://host:port``
  (without the flag it would use TLS on 5671 and drop the port). The SASL layer is still used,
  with mechanism ANONYMOUS: the real credential travels as a CBS token.
* CBS (claims-based security): the SDK attaches a sender and a receiver link to the ``$cbs`` node
  and sends a ``put-token`` request (application properties ``operation``, ``type``, ``name``;
  body = the token; properties.message_id = a UUID). It waits for a reply on its ``$cbs``
  receiver whose ``correlation_id`` equals that message id and whose application property
  ``status-code`` is 2xx. We answer 202 as Service Bus does, after checking the SAS signature
  against the emulator's key, so a wrong connection string fails here as it would in Azure.

Sending: the SDK attaches a sender link whose target is ``amqps://host:port/<entity>`` and
transfers messages; a ``ServiceBusMessageBatch`` is ONE transfer whose data sections each hold
a complete encoded message (see ``codec.batch_items``). Every message is recorded per address
(``received``/``wait_for``), whether or not an entity of that name was declared; a declared
queue or topic also stores it for receivers (see ``entities``). Every transfer is accepted,
unless ``fail_next_sends`` told us to reject it or detach the link with an error.

Receiving, from a declared queue, subscription (``<topic>/Subscriptions/<name>``) or dead-letter
queue (``<path>/$DeadLetterQueue``):

* The SDK attaches a receiver link with source ``amqps://host:port/<path>``; an undeclared path
  is refused (detach with ``amqp:not-found``). It asks for snd-settle-mode *settled* in
  receive-and-delete mode: we then send pre-settled deliveries and delete on sending. Otherwise
  (peek-lock; rcv-settle-mode *second*) each delivery is sent unsettled under a fresh lock
  token, which is also the delivery tag (the SDK reads it as ``uuid.UUID(bytes_le=tag)``).
* Deliveries go out only against link credit, shared round-robin between the links on a path,
  so competing receivers never hold the same message while it is locked.
* Each delivery carries header.delivery-count (0 first; the Python SDK shows it as is) and the
  annotations ``x-opt-sequence-number``, ``x-opt-enqueued-time`` and ``x-opt-locked-until``
  (AMQP timestamps), and, once dead-lettered, the application properties ``DeadLetterReason``
  and ``DeadLetterErrorDescription``.
* The receiver settles with a disposition, unsettled, and waits for ours echoing the outcome:
  accepted = complete; modified with delivery-failed = abandon (count + 1), without it = release;
  released = release (the SDK releases what arrives outside a receive call, and on close);
  rejected = dead-letter, with reason and description from the error's info map
  (``DeadLetterReason``, ``DeadLetterErrorDescription``). A lost lock is answered ``rejected``
  with ``com.microsoft:message-lock-lost``, which the SDK raises as ``MessageLockLostError``.
  Modified with undeliverable-here is the SDK's *defer*: not implemented (refused).
* The entity's ``$management`` node (``<path>/$management``, request/response over a link pair)
  answers ``com.microsoft:renew-lock`` (body ``lock-tokens`` -> ``expirations``) and
  ``com.microsoft:update-disposition`` (the SDK's fallback when a receiver-link settlement was
  not confirmed: ``disposition-status`` completed/abandoned/suspended, ``lock-tokens``,
  ``deadletter-reason``/``-description``). Other operations get 501.
* Lock expiry (checked by the socket loop, which wakes for the next expiry) returns the message
  with delivery count + 1; see ``entities`` for max delivery count and duplicate detection.

Design: a single background thread drives proton's protocol engine (``Transport`` +
``Connection`` + ``Collector``) over plain sockets with ``selectors``, instead of proton's
``Container`` reactor. The engine does the AMQP framing and SASL; we own the socket loop, so
stopping is one flag plus a wake-up byte, every socket is closed on exit, and an exception while
handling one connection closes that connection (recorded in ``errors``) instead of killing the
broker thread. All state shared with the test thread sits behind one ``threading.Condition``.

What it does NOT do: TLS, checking Entra ID (AAD/JWT) tokens, subscription filters/rules,
sessions, defer/deferred messages, scheduled messages, peek, message TTL expiry, entity sizes or
quotas, throttling, auto-forwarding, transactions, or anything else of the real Service Bus
service or its emulator not listed above. Entity names are case-sensitive here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

from proton import (
    Array,
    Collector,
    Condition,
    Connection,
    Data,
    Delivery,
    Endpoint,
    Event,
    Link,
    Message,
    Transport,
    int32,
    symbol,
    timestamp,
)

from tests.support.amqp_broker.codec import (
    ReceivedAmqpMessage,
    as_text,
    batch_items,
    encode_for_delivery,
    message_id_of,
    split_sections,
    to_received,
)
from tests.support.amqp_broker.entities import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_LOCK_DURATION,
    DEFAULT_MAX_DELIVERY_COUNT,
    SUBSCRIPTIONS_INFIX,
    Acquired,
    EntityNotFoundError,
    LockLostError,
    MessageCounts,
    Namespace,
    ReceivableEntity,
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
_RENEW_LOCK = "com.microsoft:renew-lock"
_UPDATE_DISPOSITION = "com.microsoft:update-disposition"
_LOCK_LOST = "com.microsoft:message-lock-lost"
_NOT_IMPLEMENTED = "amqp:not-implemented"


@dataclass(frozen=True)
class DeadLetteredMessage:
    """A message in a dead-letter queue, and why it is there."""

    message: ReceivedAmqpMessage
    reason: str | None
    description: str | None
    delivery_count: int
    sequence_number: int


@dataclass
class _Failure:
    condition: str
    description: str
    detach: bool


class _Unsupported(Exception):
    """A request for something the test broker does not implement."""


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
        # Our sending links that deliver an entity's messages: link name -> entity path.
        self.consumers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return bool(self.transport.closed)


class AmqpTestBroker:
    """Start with ``with AmqpTestBroker() as broker:``; see the module docstring.

    ``clock`` (epoch seconds) times locks, enqueue times and duplicate-detection windows."""

    def __init__(self, host: str = "127.0.0.1", *, clock: Callable[[], float] = time.time) -> None:
        self._listener = socket.create_server((host, 0))
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._clock = clock
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._cond = threading.Condition()
        self._received: dict[str, list[ReceivedAmqpMessage]] = {}
        self._failures: list[_Failure] = []
        self._dropped_settlements = 0
        self._namespace = Namespace()
        self._stopping = False
        self.errors: list[BaseException] = []
        self._tokens: list[str] = []  # audiences of accepted CBS tokens, one per put-token
        self._transfers: dict[str, int] = {}  # AMQP transfers (a batch is one) per entity
        self._thread = threading.Thread(target=self._run, name="amqp-test-broker", daemon=True)

    # -- test-facing API: lifecycle and what was sent ---------------------------------------

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
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._wake_w.close()

    def __enter__(self) -> AmqpTestBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, entity: str) -> list[ReceivedAmqpMessage]:
        """Every message sent to the address ``entity`` so far, duplicates included."""
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
        """Forget what was sent, every declared entity and every injected failure."""
        with self._cond:
            self._received.clear()
            self._transfers.clear()
            self._failures.clear()
            self._dropped_settlements = 0
            self._namespace = Namespace()

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

    # -- test-facing API: entities ----------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        duplicate_detection_window: float | None = None,
    ) -> None:
        """Create a queue (and its dead-letter queue). Durations in seconds; duplicate
        detection is off unless a window is given, as in Service Bus."""
        with self._cond:
            self._namespace.declare_queue(
                name,
                lock_duration=lock_duration,
                max_delivery_count=max_delivery_count,
                duplicate_detection_window=duplicate_detection_window,
            )

    def declare_topic(self, name: str, *, duplicate_detection_window: float | None = None) -> None:
        """Create a topic; each of its subscriptions gets a copy of every message it accepts."""
        with self._cond:
            self._namespace.declare_topic(
                name, duplicate_detection_window=duplicate_detection_window
            )

    def declare_subscription(
        self,
        topic: str,
        name: str,
        *,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
    ) -> str:
        """Create a subscription of a declared topic; returns its path for ``counts`` etc.
        It gets the messages sent to the topic from now on."""
        with self._cond:
            self._namespace.declare_subscription(
                topic, name, lock_duration=lock_duration, max_delivery_count=max_delivery_count
            )
        return f"{topic}{SUBSCRIPTIONS_INFIX}{name}"

    def counts(self, path: str) -> MessageCounts:
        """Message counts of a queue, subscription or dead-letter queue (``EntityNotFoundError``
        when none has that path)."""
        with self._cond:
            return self._namespace.receivable(path).counts()

    def wait_for_counts(
        self, path: str, predicate: Callable[[MessageCounts], bool], timeout: float = 10.0
    ) -> MessageCounts:
        """Wait until ``predicate(counts(path))`` holds (re-checked on every change the broker
        makes, lock expiry included); those counts, or ``TimeoutError`` with the last ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(counts := self._namespace.receivable(path).counts()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{path}: still {counts} after {timeout}s")
                self._cond.wait(remaining)
            return counts

    def dead_lettered(self, path: str) -> list[DeadLetteredMessage]:
        """The messages in the dead-letter queue of queue or subscription ``path``, in
        sequence-number order, locked ones included."""
        with self._cond:
            entity = self._namespace.receivable(path)
            if entity.dead_letter_queue is None:
                raise ValueError(f"{path} is itself a dead-letter queue")
            stored = entity.dead_letter_queue.messages()
        return [
            DeadLetteredMessage(
                message=to_received(
                    path + DEAD_LETTER_SUFFIX, split_sections(m.payload), m.sequence_number
                ),
                reason=m.dead_letter_reason,
                description=m.dead_letter_description,
                delivery_count=m.delivery_count,
                sequence_number=m.sequence_number,
            )
            for m in stored
        ]

    def drop_next_settlements(self, n: int = 1) -> None:
        """Make the next ``n`` settlements sent on receiver links go unapplied and detach their
        link (``amqp:link:detach-forced``), as if the link died with them in flight. The lock
        stays, so the SDK's fallback through ``$management`` can still settle the message."""
        with self._cond:
            self._dropped_settlements += n

    # -- socket loop ------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

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
                for peer in peers.values():
                    self._pump(peer)
                self._dispatch(peers.values())
                for peer in list(peers.values()):
                    self._flush(peer)
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
        """Let proton handle idle timeouts; returns how long select may block (until the next
        idle deadline or lock expiry)."""
        now = time.monotonic()
        timeout = 1.0
        for peer in peers:
            deadline = peer.transport.tick(now)
            if deadline:
                timeout = min(timeout, max(0.0, deadline - now))
        with self._cond:
            expiry = self._namespace.next_lock_expiry()
        if expiry is not None:
            timeout = min(timeout, max(0.0, expiry - self._clock()))
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
        """Dispatch the proton events of one connection."""
        while True:
            event = peer.collector.peek()
            if event is None:
                break
            try:
                self._on_event(peer, event)
            except Exception as exc:
                self._fail_connection(peer, exc)
            peer.collector.pop()

    def _fail_connection(self, peer: _Peer, exc: Exception) -> None:
        self.errors.append(exc)
        peer.connection.condition = _condition("amqp:internal-error", repr(exc))
        peer.connection.close()

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
            self._open_link(peer, link)
        elif kind in (Event.LINK_REMOTE_CLOSE, Event.LINK_REMOTE_DETACH) and link is not None:
            # Locks taken through the link outlive it, as in Service Bus: they expire or are
            # settled through $management.
            if link.is_sender:
                peer.consumers.pop(link.name, None)
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.close()
        elif kind == Event.DELIVERY and event.delivery is not None:
            self._on_delivery(peer, event.delivery)

    def _open_link(self, peer: _Peer, link: Link) -> None:
        # A broker's terminus mirrors what the client asked for.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.is_receiver:
            link.max_message_size = MAX_MESSAGE_SIZE
            link.open()
            link.flow(_LINK_CREDIT)
            return
        address = link.remote_source.address or ""
        if address == _CBS_NODE or address.endswith(_MANAGEMENT_SUFFIX):
            link.open()  # a reply link
            return
        path = _entity_of(address)
        try:
            with self._cond:
                self._namespace.receivable(path)
        except EntityNotFoundError as exc:
            link.open()
            link.condition = Condition("amqp:not-found", str(exc))
            link.close()
            return
        # Settled (receive-and-delete) or unsettled with rcv-settle-mode second (peek-lock).
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        peer.consumers[link.name] = path
        link.open()

    def _on_delivery(self, peer: _Peer, delivery: Delivery) -> None:
        link = delivery.link
        if link.is_sender:
            path = peer.consumers.get(link.name)
            if path is not None:
                self._on_settlement(delivery, path)
            elif delivery.updated:
                # A reply we sent was settled (or acknowledged) by the client: forget it.
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
            condition = _condition(failure.condition, failure.description)
            if failure.detach:
                link = delivery.link
                link.condition = condition
                link.close()
            else:
                delivery.local.condition = condition
                delivery.update(Delivery.REJECTED)
                delivery.settle()
            return
        sections = split_sections(encoded)
        items = batch_items(sections)
        messages = [(i, split_sections(i)) for i in items] if items else [(encoded, sections)]
        now = self._clock()
        with self._cond:
            log = self._received.setdefault(entity, [])
            for payload, message in messages:
                log.append(to_received(entity, message, len(log) + 1))
                self._namespace.publish(entity, message_id_of(message), payload, now)
            self._transfers[entity] = self._transfers.get(entity, 0) + 1
            self._cond.notify_all()
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()

    # -- receiving --------------------------------------------------------------------------

    def _dispatch(self, peers: Iterable[_Peer]) -> None:
        """Expire locks, then hand available messages to consumer links with credit."""
        by_path: dict[str, list[tuple[_Peer, Link]]] = {}
        for peer in peers:
            for link in _open_links(peer.connection):
                path = peer.consumers.get(link.name) if link.is_sender else None
                if path is not None:
                    by_path.setdefault(path, []).append((peer, link))
        now = self._clock()
        with self._cond:
            self._namespace.expire_locks(now)
            for path, consumers in by_path.items():
                try:
                    entity: ReceivableEntity | None = self._namespace.receivable(path)
                except EntityNotFoundError:  # cleared while a receiver was attached
                    entity = None
                while entity is not None and entity.has_available:
                    ready = [(p, link) for p, link in consumers if link.credit > 0]
                    if not ready:
                        break
                    for peer, link in ready:  # one each per round: competing consumers
                        presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
                        acquired = entity.acquire(now, peek_lock=not presettled)
                        if acquired is None:
                            break
                        try:
                            _deliver(link, acquired)
                        except Exception as exc:
                            self._fail_connection(peer, exc)
                for _, link in consumers:
                    if link.drain_mode and link.credit > 0:
                        link.drained()  # nothing left to send: give the credit back
            self._cond.notify_all()

    def _on_settlement(self, delivery: Delivery, path: str) -> None:
        """A receiver's disposition of a message we delivered under a lock."""
        # None once handled, and for pre-settled (receive-and-delete) deliveries.
        token: uuid.UUID | None = delivery.lock_token
        if token is None or not delivery.updated:
            return
        state = delivery.remote_state
        terminal = (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED)
        if state not in terminal:
            return
        delivery.lock_token = None
        with self._cond:
            drop = self._dropped_settlements > 0
            self._dropped_settlements -= int(drop)
        if drop:
            link = delivery.link
            link.condition = _condition("amqp:link:detach-forced", "injected by the test broker")
            link.close()
            return
        remote = delivery.remote
        error = None
        try:
            with self._cond:
                entity = self._namespace.receivable(path)
                now = self._clock()
                if state == Delivery.ACCEPTED:
                    entity.complete(token, now)
                elif state == Delivery.REJECTED:
                    reason, description = _dead_letter_details(remote.condition)
                    entity.dead_letter(token, now, reason, description)
                elif state == Delivery.RELEASED:
                    entity.abandon(token, now, count_attempt=False)
                elif remote.undeliverable:
                    raise _Unsupported("defer (modified, undeliverable-here) is not implemented")
                else:
                    entity.abandon(token, now, count_attempt=bool(remote.failed))
                self._cond.notify_all()
        except (LockLostError, EntityNotFoundError) as exc:
            error = _condition(_LOCK_LOST, str(exc))
        except _Unsupported as exc:
            error = _condition(_NOT_IMPLEMENTED, str(exc))
        except ValueError as exc:
            error = _condition("amqp:not-allowed", str(exc))
        if not delivery.settled:  # (settled by the receiver: a release sent pre-settled)
            # Confirm what was applied (the SDK checks the echo matches what it asked for).
            if error is not None:
                delivery.local.condition = error
                delivery.update(Delivery.REJECTED)
            else:
                if state == Delivery.MODIFIED:
                    delivery.local.failed = remote.failed
                    delivery.local.undeliverable = remote.undeliverable
                delivery.update(state)
        delivery.settle()

    # -- CBS and $management ----------------------------------------------------------------

    def _on_cbs_request(self, peer: _Peer, delivery: Delivery, encoded: bytes) -> None:
        request = Message()
        request.decode(encoded)
        # The SDK sends some of these as AMQP binary rather than string: compare as text.
        props = _properties_as_text(request)
        token, audience = as_text(request.body), props.get("name", "")
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
        path = _entity_of(address.removesuffix(_MANAGEMENT_SUFFIX))
        body: Any = request.body if isinstance(request.body, dict) else {}
        fields = {str(k): v for k, v in body.items()}
        status, description, condition, response = 200, "OK", None, None
        try:
            with self._cond:
                entity = self._namespace.receivable(path)
                if operation == _RENEW_LOCK:
                    response = self._renew_locks(entity, fields)
                elif operation == _UPDATE_DISPOSITION:
                    self._update_disposition(entity, fields)
                else:
                    raise _Unsupported(f"the test broker does not implement {operation!r}")
                self._cond.notify_all()
        except LockLostError as exc:
            status, description, condition = 410, str(exc), _LOCK_LOST
        except EntityNotFoundError as exc:
            status, description, condition = 404, str(exc), "amqp:not-found"
        except _Unsupported as exc:
            status, description, condition = 501, str(exc), "com.microsoft:not-implemented"
        except (KeyError, TypeError, ValueError) as exc:
            status, description, condition = 400, repr(exc), "com.microsoft:argument-error"
        properties: dict[str, Any] = {"statusCode": int32(status), "statusDescription": description}
        if condition is not None:
            properties["errorCondition"] = symbol(condition)
        self._reply(peer, address, request, properties, response)

    def _renew_locks(self, entity: ReceivableEntity, fields: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        until = [entity.renew(token, now) for token in _lock_tokens(fields["lock-tokens"])]
        stamps = [timestamp(round(t * 1000)) for t in until]
        return {"expirations": Array(Data.NULL, Data.TIMESTAMP, *stamps)}

    def _update_disposition(self, entity: ReceivableEntity, fields: dict[str, Any]) -> None:
        status = str(as_text(fields["disposition-status"]))
        reason = as_text(fields.get("deadletter-reason"))
        description = as_text(fields.get("deadletter-description"))
        now = self._clock()
        for token in _lock_tokens(fields["lock-tokens"]):
            if status == "completed":
                entity.complete(token, now)
            elif status == "abandoned":
                entity.abandon(token, now)
            elif status == "suspended":
                entity.dead_letter(token, now, reason or None, description or None)
            else:
                raise _Unsupported(f"disposition-status {status!r} is not implemented")

    def _reply(
        self,
        peer: _Peer,
        node: str,
        request: Message,
        properties: dict[str, Any],
        body: Any = None,
    ) -> None:
        """Send a management/CBS response on the client's receiving link from ``node``."""
        sender = _find_sender(peer.connection, node, request.reply_to)
        if sender is None:
            raise RuntimeError(f"no reply link attached for {node}")
        response = Message(
            id=str(uuid.uuid4()),
            correlation_id=request.id,
            properties=properties,
            body=body,
        )
        sender.send(response)  # Message.send creates the delivery, writes it and advances


def _deliver(link: Link, acquired: Acquired) -> None:
    # The SDK reads the lock token from the tag as uuid.UUID(bytes_le=tag). Proton takes bytes
    # here, though typed str (reading ``Delivery.tag`` back would UTF-8-decode it: we don't).
    tag = (acquired.lock_token or uuid.uuid4()).bytes_le
    payload = encode_for_delivery(acquired.message, acquired.locked_until)
    delivery = link.delivery(tag)  # type: ignore[arg-type]
    delivery.lock_token = acquired.lock_token
    link.send(payload)
    link.advance()
    if acquired.lock_token is None:
        delivery.settle()  # receive-and-delete: pre-settled


def _open_links(connection: Connection) -> Iterator[Link]:
    link = connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        yield link
        link = link.next(Endpoint.LOCAL_ACTIVE)


def _find_sender(connection: Connection, node: str, reply_to: str | None) -> Link | None:
    """The local sender attached from ``node`` (matching ``reply_to`` when the client set one)."""
    fallback = None
    for link in _open_links(connection):
        if link.is_sender and link.remote_source.address == node:
            if reply_to is None or link.remote_target.address == reply_to:
                return link
            fallback = link
    return fallback


def _condition(name: str, description: str) -> Condition:
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def _dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    """Reason and description of a dead-letter request: the SDK puts both in the error's info
    map (``DeadLetterReason``, ``DeadLetterErrorDescription``), the description also as the
    error's description."""
    if condition is None:
        return None, None
    raw: Any = condition.info if isinstance(condition.info, dict) else {}
    info = {str(k): as_text(v) for k, v in raw.items()}
    description = info.get("DeadLetterErrorDescription") or as_text(condition.description)
    return info.get("DeadLetterReason") or None, description or None


def _lock_tokens(value: Any) -> list[uuid.UUID]:
    """Lock tokens of a management request: an AMQP array of uuids (or a list)."""
    items = value.elements if isinstance(value, Array) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"lock-tokens must be a non-empty array of uuids, got {value!r}")
    return [item if isinstance(item, uuid.UUID) else uuid.UUID(str(item)) for item in items]


def _entity_of(address: str) -> str:
    """``amqps://host:port/orders`` (as the SDK addresses an entity) → ``orders``."""
    parsed = urlparse(address)
    path = parsed.path if parsed.scheme else address
    return path.strip("/")


def _properties_as_text(message: Message) -> dict[str, Any]:
    raw: dict[Any, Any] = message.properties or {}
    return {str(k): as_text(v) for k, v in raw.items()}


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

