"""The recorded shapes of every stored event version and every integration contract version,
and the check that a shape never changes without a version bump.

``schema_snapshot.json`` holds, per event type and schema version, the fields the codec stores
(name and JSON type), and per contract name and version, its JSON schema (structure only). Old
versions stay in it for good: events of every recorded version may be stored somewhere, and the
codec must go on reading them (through its upcasters).

    python -m tests.versioning.snapshot --update   # record new versions (never rewrites one)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.messages import CONTRACTS, IntegrationMessage
from domain import orders, payments
from domain.codec import EventCodec, EventSchema

SNAPSHOT = Path(__file__).with_name("schema_snapshot.json")
CODECS: tuple[EventCodec[Any], ...] = (orders.order_codec, payments.payment_codec)
UPDATE_COMMAND = "python -m tests.versioning.snapshot --update"

Shapes = dict[str, dict[str, dict[str, Any]]]  # name -> version -> shape
Snapshot = dict[str, Shapes]  # "events" | "contracts" -> shapes

_SAMPLES: dict[Any, Any] = {str: "text", int: 1, bool: True, float: 1.5}
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
    (dict, "object"), (type(None), "null"))


def _json_type(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_type(item) for key, item in sorted(value.items())}
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def sample_event(event_class: type[Any]) -> Any:
    """An instance of an event dataclass with a sample value per field, from its type hints."""
    hints = typing.get_type_hints(event_class)
    values = {}
    for field in dataclasses.fields(event_class):
        if hints[field.name] not in _SAMPLES:
            raise TypeError(f"{event_class.__name__}.{field.name}: no sample for "
                            f"{hints[field.name]!r}; add one to _SAMPLES")
        values[field.name] = _SAMPLES[hints[field.name]]
    return event_class(**values)


def event_shape(schema: EventSchema[Any]) -> dict[str, Any]:
    """The stored fields of the current version: name -> JSON type."""
    data = schema.encode(sample_event(schema.event_class))
    shape: dict[str, Any] = _json_type(data)
    return shape


def sample_data(shape: Mapping[str, Any]) -> dict[str, Any]:
    """Stored data of a recorded shape, with sample values."""
    by_type = {"string": "text", "integer": 1, "boolean": True, "number": 1.5, "null": None,
               "array": []}
    return {key: sample_data(kind) if isinstance(kind, dict) else by_type[kind]
            for key, kind in shape.items()}


def _structure(schema: Any) -> Any:
    # Titles and descriptions are documentation, not shape.
    if isinstance(schema, dict):
        return {k: _structure(v) for k, v in sorted(schema.items())
                if k not in ("title", "description")}
    if isinstance(schema, list):
        return [_structure(v) for v in schema]
    return schema


def contract_shape(contract: type[IntegrationMessage]) -> dict[str, Any]:
    shape: dict[str, Any] = _structure(contract.model_json_schema())
    return shape


def current_snapshot(codecs: tuple[EventCodec[Any], ...] = CODECS,
                     contracts: Mapping[tuple[str, int], type[IntegrationMessage]] = CONTRACTS
                     ) -> Snapshot:
    events: Shapes = {}
    for codec in codecs:
        for schema in codec.schemas:
            events[schema.type_name] = {str(schema.version): event_shape(schema)}
    contract_shapes: Shapes = {}
    for (name, version), contract in sorted(contracts.items()):
        contract_shapes.setdefault(name, {})[str(version)] = contract_shape(contract)
    return {"events": events, "contracts": contract_shapes}


def _where(name: str, codecs: tuple[EventCodec[Any], ...]) -> str:
    for codec in codecs:
        if name in codec.type_names:
            return f"domain/{codec.aggregate}s/codec.py"
    return "its codec"


def check(recorded: Snapshot, current: Snapshot,
          codecs: tuple[EventCodec[Any], ...] = CODECS) -> list[str]:
    """What differs between the recorded and the current shapes, each with what to do."""
    problems = []
    for name, versions in current["events"].items():
        ((version, shape),) = versions.items()
        known = recorded["events"].get(name, {})
        newest = max((int(v) for v in known), default=0)
        if int(version) < newest:
            problems.append(f"event {name}: the code writes version {version} but version "
                            f"{newest} is recorded; a schema version never goes back")
        elif version in known and known[version] != shape:
            problems.append(
                f"event {name}: its stored shape changed but its schema version is still "
                f"{version} (recorded {known[version]}, now {shape}). Events of version "
                f"{version} are already stored with the recorded shape: keep it, and instead "
                f"bump `version` to {int(version) + 1} in {_where(name, codecs)} with an "
                f"upcaster from {version} to the new shape, then run `{UPDATE_COMMAND}`")
        elif version not in known:
            problems.append(f"event {name}: version {version} is not recorded; run "
                            f"`{UPDATE_COMMAND}` and commit tests/versioning/"
                            f"schema_snapshot.json with the change")
    for name in recorded["events"]:
        if name not in current["events"]:
            problems.append(f"event {name}: recorded but no codec reads it any more; stored "
                            f"events of that type would be unreadable: keep its schema")
    for name, versions in current["contracts"].items():
        for version, shape in versions.items():
            known = recorded["contracts"].get(name, {})
            if version in known and known[version] != shape:
                problems.append(
                    f"contract {name} v{version}: its shape changed without a version bump. "
                    f"Consumers of v{version} rely on the recorded shape: keep it, add a class "
                    f"{name}V{int(version) + 1} in contracts/messages.py with the new shape, "
                    f"accept both versions in the consumers for a transition period, then run "
                    f"`{UPDATE_COMMAND}`")
            elif version not in known:
                problems.append(f"contract {name} v{version} is not recorded; run "
                                f"`{UPDATE_COMMAND}` and commit the snapshot with the change")
    return problems


def unreadable_versions(recorded: Snapshot, codecs: tuple[EventCodec[Any], ...] = CODECS
                        ) -> list[str]:
    """Every recorded event version the codecs can no longer decode (sample data of its
    recorded shape, through the upcasters)."""
    problems = []
    by_name = {name: codec for codec in codecs for name in codec.type_names}
    for name, versions in recorded["events"].items():
        codec = by_name.get(name)
        for version, shape in versions.items():
            if codec is None:
                problems.append(f"{name} v{version}: no codec reads it")
                continue
            try:
                codec.decode(name, int(version), sample_data(shape))
            except (ValueError, KeyError, TypeError) as error:
                problems.append(f"{name} v{version} (shape {shape}) cannot be read: {error}; "
                                f"declare an upcaster from version {version}")
    return problems


def updated(recorded: Snapshot, current: Snapshot) -> Snapshot:
    """The snapshot with the current versions added; refuses to rewrite a recorded version."""
    result: Snapshot = json.loads(json.dumps(recorded))
    for section in ("events", "contracts"):
        for name, versions in current[section].items():
            for version, shape in versions.items():
                known = result[section].setdefault(name, {})
                if version in known and known[version] != shape:
                    raise ValueError(f"{section[:-1]} {name} version {version} is recorded with "
                                     f"another shape; bump its version instead of rewriting it")
                known[version] = shape
    return result


def load(path: Path = SNAPSHOT) -> Snapshot:
    snapshot: Snapshot = json.loads(path.read_text(encoding="utf-8"))
    return snapshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.versioning.snapshot",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="record new versions")
    args = parser.parse_args(argv)
    recorded = load() if SNAPSHOT.exists() else {"events": {}, "contracts": {}}
    current = current_snapshot()
    if not args.update:
        problems = check(recorded, current) + unreadable_versions(recorded)
        print("\n".join(problems) or "the snapshot matches the code")
        return 1 if problems else 0
    try:
        snapshot = updated(recorded, current)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
