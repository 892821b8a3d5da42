"""The Cosmos DB personal-data store: one document per data subject in a ``personaldata``
container (partition key ``/id``), in the service's database but apart from its event log.

A document is ``{"id": subjectId, "data": {...}, "updatedAt": ...}``; erasure replaces it with a
tombstone ``{"id", "data": null, "updatedAt", "erasedAt"}``. Cosmos DB keeps no readable older
version of a replaced document (no change feed reads this container); what remains is the
account's continuous backup, until its retention period ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey

from eventstore.adapters.cosmos.connection import (
    CosmosClientOptions,
    CosmosConnection,
    cosmos_client_from_settings,
)
from eventstore.adapters.cosmos.errors import read_or_none, translated
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.clock import utc_now_iso
from eventstore.commit import JsonDict
from eventstore.ports import PersonalData


class CosmosPersonalDataStore:
    """``PersonalDataStore`` over a personal-data container (partition key ``/id``)."""

    def __init__(self, container: ContainerProxy, *, meter: RequestMeter | None = None,
                 clock: Callable[[], str] = utc_now_iso) -> None:
        self._container = container
        self._meter = meter or REQUEST_METER
        self._clock = clock

    def put(self, subject_id: str, data: JsonDict) -> None:
        self._upsert({"id": subject_id, "data": data, "updatedAt": self._clock()},
                     "personal_data_put")

    def get(self, subject_id: str) -> PersonalData | None:
        item = read_or_none(self._container, subject_id, self._meter, "personal_data_get")
        if item is None:
            return None
        return _record(item)

    def erase(self, subject_id: str) -> None:
        current = self.get(subject_id)
        if current is not None and current.data is None and current.erased_at is not None:
            return  # erased before
        now = self._clock()
        self._upsert({"id": subject_id, "data": None, "updatedAt": now, "erasedAt": now},
                     "personal_data_erase")

    def _upsert(self, document: JsonDict, operation: str) -> None:
        with translated(operation):
            self._container.upsert_item(document,
                                        raw_response_hook=self._meter.response_hook(operation))


def _record(item: Mapping[str, Any]) -> PersonalData:
    data = item.get("data")
    erased_at = item.get("erasedAt")
    return PersonalData(subject_id=str(item["id"]),
                        data=dict(data) if isinstance(data, Mapping) else None,
                        updated_at=str(item.get("updatedAt") or ""),
                        erased_at=None if erased_at is None else str(erased_at))


def ensure_personal_data_container(client: CosmosClient, database_name: str,
                                   container: str) -> None:
    """Create the database and the container when missing (emulator, tests); Bicep does it in
    Azure."""
    with translated("ensure_personal_data_container"):
        database = client.create_database_if_not_exists(database_name)
        database.create_container_if_not_exists(container, PartitionKey("/id"))


def open_personal_data_store(*, database: str, container: str,
                             settings: Mapping[str, str] | CosmosConnection,
                             options: CosmosClientOptions | None = None,
                             meter: RequestMeter | None = None) -> CosmosPersonalDataStore:
    """The store over the process-wide client; against a loopback emulator the container is
    created when missing (as ``open_cosmos_database`` does for the others)."""
    connection = (settings if isinstance(settings, CosmosConnection)
                  else CosmosConnection.from_settings(settings))
    client = cosmos_client_from_settings(connection, options)
    if connection.is_loopback:
        ensure_personal_data_container(client, database, container)
    proxy = client.get_database_client(database).get_container_client(container)
    return CosmosPersonalDataStore(proxy, meter=meter)
