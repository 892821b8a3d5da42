"""The leases of the lease-based change-feed processor (``eventstore.changefeed``) as documents in
the leases container (partition key ``/id``), one per (lease prefix, feed range):

    {"id": "py:lease:{eventsContainerId}:{prefix}:{rangeId}", "kind": "py-lease",
     "container": ..., "prefix": ..., "rangeId": ..., "owner": ..., "continuation": ...,
     "expiresAt": ...}

The ``py:`` ids never meet the Functions Cosmos DB trigger's leases in the same container: the
trigger (the .NET change-feed processor) names its documents
``{prefix}{accountHost}_{databaseRid}_{containerRid}`` followed by ``..{range}``, ``.info`` or
``.lock``, and finds them by that id prefix. Nor do they meet the single readers'
``checkpoint:`` documents or the feed-range layout (``py:ranges:``,
``changefeed.CosmosPartitionedFeed``). The events container's id is part of
the lease id, so services that share a leases container keep apart.

Every replace is conditional on the document's ``_etag`` (If-Match): 412 (or 404, the lease is
gone) is ``ConcurrencyError``, which tells the processor that another instance wrote first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.adapters.cosmos.errors import (
    raise_translated,
    read_or_none,
    retried_on_header_race,
    translated,
)
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.errors import ConcurrencyError
from eventstore.ports import Lease

LEASE_KIND = "py-lease"
_NOT_IN_IDS = frozenset("/\\?#")  # Cosmos DB refuses these in document ids


def _checked(what: str, value: str) -> str:
    if not value or not value.isprintable() or _NOT_IN_IDS & set(value):
        raise ValueError(f"a lease {what} must be non-empty printable text without '/', '\\', "
                         f"'?' or '#' (it is part of a document id), got {value!r}")
    return value


class CosmosLeaseStore:
    """``LeaseStore`` over a leases container, for the feed of one events container."""

    def __init__(self, leases: ContainerProxy, events_container: str, *,
                 meter: RequestMeter | None = None) -> None:
        self._leases = leases
        self._events_container = _checked("container name", events_container)
        self._meter = meter or REQUEST_METER

    def lease_id(self, prefix: str, range_id: str) -> str:
        return (f"py:lease:{self._events_container}:{_checked('prefix', prefix)}:"
                f"{_checked('range id', range_id)}")

    def list_leases(self, prefix: str) -> list[Lease]:
        _checked("prefix", prefix)

        def query() -> list[dict[str, Any]]:
            return list(self._leases.query_items(
                "SELECT * FROM c WHERE c.kind = @kind AND c.container = @container"
                " AND c.prefix = @prefix",
                parameters=[{"name": "@kind", "value": LEASE_KIND},
                            {"name": "@container", "value": self._events_container},
                            {"name": "@prefix", "value": prefix}],
                enable_cross_partition_query=True,
                raw_response_hook=self._meter.response_hook("list_leases")))

        with translated("list_leases"):
            documents = retried_on_header_race(query)
        leases = [self._lease(document) for document in documents]
        return sorted(leases, key=lambda lease: lease.range_id)

    def read_lease(self, prefix: str, range_id: str) -> Lease | None:
        document = read_or_none(self._leases, self.lease_id(prefix, range_id), self._meter,
                                "read_lease")
        return None if document is None else self._lease(document)

    def create_lease(self, prefix: str, range_id: str) -> Lease | None:
        body = self._document(Lease(prefix=prefix, range_id=range_id))
        try:
            created = self._leases.create_item(
                body, raw_response_hook=self._meter.response_hook("create_lease"))
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                return None  # another instance created it first
            raise_translated("create_lease", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            # Not retried by the SDK once sent: if it landed, the next cycle finds it (409).
            raise_translated("create_lease", error)
        return self._lease(created)

    def replace_lease(self, lease: Lease) -> Lease:
        body = self._document(lease)
        if not lease.etag:
            raise ConcurrencyError(f"lease {body['id']!r} has no ETag: read it first")
        try:
            stored = self._leases.replace_item(
                body["id"], body, etag=lease.etag, match_condition=MatchConditions.IfNotModified,
                raw_response_hook=self._meter.response_hook("replace_lease"))
        except CosmosHttpResponseError as error:
            if error.status_code in (404, 412):
                raise ConcurrencyError(
                    f"lease {body['id']!r} does not exist or its ETag is no longer "
                    f"{lease.etag!r}") from error
            raise_translated("replace_lease", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            raise_translated("replace_lease", error)
        return replace(lease, etag=str(stored["_etag"]))

    def _document(self, lease: Lease) -> dict[str, Any]:
        return {"id": self.lease_id(lease.prefix, lease.range_id), "kind": LEASE_KIND,
                "container": self._events_container, "prefix": lease.prefix,
                "rangeId": lease.range_id, "owner": lease.owner,
                "continuation": lease.continuation, "expiresAt": lease.expires_at}

    def _lease(self, document: Mapping[str, Any]) -> Lease:
        try:
            prefix, range_id = str(document["prefix"]), str(document["rangeId"])
            owner, continuation = document.get("owner"), document.get("continuation")
            lease = Lease(prefix=prefix, range_id=range_id,
                          owner=None if owner is None else str(owner),
                          continuation=None if continuation is None else str(continuation),
                          expires_at=float(document.get("expiresAt") or 0.0),
                          etag=str(document["_etag"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"lease document {document.get('id')!r} is malformed: "
                             f"{error!r}") from error
        if document.get("id") != self.lease_id(prefix, range_id) \
                or document.get("container") != self._events_container:
            raise ValueError(f"lease document {document.get('id')!r} names another lease "
                             f"({self._events_container}, {prefix}, {range_id})")
        return lease
