"""The embedded store's compact row form of a commit, lossless both ways.

A commit document spends most of its bytes on ids and timestamps written out as text, and on
field names. A row keeps every field, packed:

- the stream id ``"{category}-{uuid}"`` (the common form) is a BLOB of the category and the 16
  bytes of the UUID; any other id stays TEXT. SQLite never finds a BLOB equal to a TEXT, and
  one id always packs the same way, so the UNIQUE (stream id, first version) check is unchanged;
- the body is MessagePack: stream type, correlation and causation ids, commit time, fingerprint
  and per event its id, type, schema version, time (omitted when it is the commit's) and data.
  A canonical lowercase UUID is stored as its 16 bytes, a timestamp of the form
  ``utc_now_iso`` writes as microseconds since the epoch, a fingerprint as its 15 digest bytes;
  any value of another form is kept as the text it is. Versions follow from the first version
  (a commit's versions are contiguous);
- event data that MessagePack cannot hold exactly as JSON would (a non-string key, an integer
  beyond 64 bits, anything that is not a JSON type) makes the whole body the JSON document
  instead, as TEXT, which is also how schema-1 files stored every commit, so both forms are
  read.

``unpack_commit`` rebuilds exactly the ``Commit`` that was packed; ``document_from_row`` gives
the commit document the change feed hands out.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import time
from typing import Any

import msgpack

from eventstore.commit import Commit, EventRecord, JsonDict, commit_id

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STREAM = re.compile(r"(.*-)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
                     re.DOTALL)
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{6})Z", re.ASCII)
_FINGERPRINT = re.compile(r"[A-Za-z0-9_-]{20}")
_MAX_INT = 2**63 - 1
_MIN_INT = -(2**63)

_dumps_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- stream ids ---------------------------------------------------------------------------------


def pack_stream_id(stream_id: str) -> str | bytes:
    match = _STREAM.fullmatch(stream_id)
    if match is None:
        return stream_id
    return match[1].encode() + bytes.fromhex(match[2].replace("-", ""))


def unpack_stream_id(key: str | bytes) -> str:
    if isinstance(key, str):
        return key
    return key[:-16].decode() + _uuid_text(key[-16:])


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- fields -------------------------------------------------------------------------------------


def _pack_id(value: str) -> str | bytes:
    return bytes.fromhex(value.replace("-", "")) if _UUID.fullmatch(value) else value


def _unpack_id(value: str | bytes) -> str:
    return value if isinstance(value, str) else _uuid_text(value)


# The text of the last second formatted (a timestamp's costly part), shared by every thread:
# replacing the one item is atomic.
_second_cache: list[tuple[int, str]] = [(-1, "")]


def _pack_time(value: str) -> str | int:
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return value
    cached_second, cached_prefix = _second_cache[0]
    if match[1] == cached_prefix:
        seconds = cached_second
    else:
        try:
            seconds = calendar.timegm(time.strptime(match[1], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return value
    packed = seconds * 1_000_000 + int(match[2])
    # Only what reads back to the very same text is packed (not a leap second "60", say).
    return packed if _unpack_time(packed) == value else value


def _unpack_time(value: str | int) -> str:
    if isinstance(value, str):
        return value
    seconds, micros = divmod(value, 1_000_000)
    cached_second, prefix = _second_cache[0]
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache[0] = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"


def _pack_fingerprint(value: str) -> str | bytes | None:
    if not value:
        return None
    if _FINGERPRINT.fullmatch(value):
        return base64.urlsafe_b64decode(value)
    return value


def _unpack_fingerprint(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return base64.urlsafe_b64encode(value).decode("ascii")


def _json_exact(value: Any) -> bool:
    """Would MessagePack give back exactly what JSON would?"""
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_MIN_INT <= value <= _MAX_INT)
    if kind is dict:
        return all(type(k) is str and _json_exact(v) for k, v in value.items())
    if kind is list:
        return all(_json_exact(v) for v in value)
    return False


# -- commits ------------------------------------------------------------------------------------


def pack_body(commit: Commit) -> bytes | str:
    """The stored body of a commit: MessagePack, or its JSON document where MessagePack would
    not give back the same data."""
    committed_at = commit.committed_at
    events = []
    for record in commit.events:
        if not _json_exact(record.data):
            return _dumps_json(commit.to_document())
        events.append([
            _pack_id(record.event_id),
            record.type,
            record.schema_version,
            None if record.occurred_at == committed_at else _pack_time(record.occurred_at),
            record.data,
        ])
    fields: list[Any] = [
        commit.stream_type,
        _pack_id(commit.correlation_id),
        _pack_id(commit.causation_id),
        _pack_time(committed_at),
        _pack_fingerprint(commit.fingerprint),
        events,
    ]
    if commit.trace_context:  # optional, last: rows written without it read the same
        fields.append(dict(commit.trace_context))
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return body


def unpack_commit(stream_id: str, first_version: int, body: bytes | str) -> Commit:
    """The commit of a stored row of stream ``stream_id``. ValueError (or KeyError, TypeError)
    when the row is not one.

    Built with ``Commit.trusted``, without the constructor's checks, which the commit passed
    when it was appended (its versions are contiguous by construction here); the checks a
    damaged row could still fail (the types of an event's type, schema version and data) are
    made here. This is the cold command's hottest loop: a commit costs a third less this way."""
    if isinstance(body, str):
        return Commit.from_document(json.loads(body))
    stream_type, correlation, causation, committed, fingerprint, events, *optional = \
        msgpack.unpackb(body)
    committed_at = _unpack_time(committed)
    records = []
    version = first_version
    for event_id, event_type, schema_version, occurred, data in events:
        if type(data) is not dict or type(event_type) is not str or not event_type or \
                type(schema_version) is not int or schema_version < 1:
            raise ValueError(f"a damaged event at version {version} of {stream_id}")
        records.append(EventRecord.trusted(
            version, event_id if type(event_id) is str else _uuid_text(event_id), event_type,
            schema_version, committed_at if occurred is None else _unpack_time(occurred), data))
        version += 1
    if not records or type(stream_type) is not str or not stream_type:
        raise ValueError(f"a damaged commit at version {first_version} of {stream_id}")
    return Commit.trusted(stream_id, stream_type, tuple(records), _unpack_id(correlation),
                          _unpack_id(causation), committed_at, _unpack_fingerprint(fingerprint),
                          _trace_context(optional))


def _trace_context(optional: list[Any]) -> dict[str, str] | None:
    if not optional or not isinstance(optional[0], dict):
        return None
    return {str(k): str(v) for k, v in optional[0].items()}


def document_from_row(key: str | bytes, first_version: int, body: bytes | str) -> JsonDict:
    """The commit document as the change feed hands it out. A row that is not even a commit is
    handed on wrapped (``raw``, ``parseError``), so its consumer parks it instead of the read
    failing for every consumer."""
    if isinstance(body, str):
        try:
            document = json.loads(body)
        except ValueError as error:
            return {"raw": body, "parseError": str(error)}
        return document if isinstance(document, dict) else {"raw": body}
    try:
        return _document(unpack_stream_id(key), first_version, body)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, msgpack.UnpackException
            ) as error:
        return {"raw": body.hex(), "parseError": f"{type(error).__name__}: {error}",
                "id": commit_id(_printable(key), first_version)}


def _document(stream_id: str, first_version: int, body: bytes) -> JsonDict:
    """``unpack_commit(...).to_document()``, built straight from the row: the change feed hands
    out documents, and every consumer parses them itself."""
    stream_type, correlation, causation, committed, fingerprint, events, *optional = \
        msgpack.unpackb(body)
    committed_at = _unpack_time(committed)
    documents = []
    version = first_version
    for event_id, event_type, schema_version, occurred, data in events:
        if type(data) is not dict or type(event_type) is not str or not event_type or \
                type(schema_version) is not int or schema_version < 1:
            raise ValueError(f"a damaged event at version {version} of {stream_id}")
        documents.append({
            "version": version,
            "eventId": event_id if type(event_id) is str else _uuid_text(event_id),
            "type": event_type,
            "schemaVersion": schema_version,
            "occurredAt": committed_at if occurred is None else _unpack_time(occurred),
            "data": data,
        })
        version += 1
    if not documents or type(stream_type) is not str or not stream_type:
        raise ValueError(f"a damaged commit at version {first_version} of {stream_id}")
    document: JsonDict = {
        "id": commit_id(stream_id, first_version),
        "streamId": stream_id,
        "streamType": stream_type,
        "version": version - 1,
        "events": documents,
        "correlationId": _unpack_id(correlation),
        "causationId": _unpack_id(causation),
        "committedAt": committed_at,
    }
    fingerprint_text = _unpack_fingerprint(fingerprint)
    if fingerprint_text:
        document["fingerprint"] = fingerprint_text
    trace = _trace_context(optional)
    if trace:
        document["traceContext"] = trace
    return document


def _printable(key: str | bytes) -> str:
    try:
        return unpack_stream_id(key)
    except (ValueError, UnicodeDecodeError):
        return repr(key)
