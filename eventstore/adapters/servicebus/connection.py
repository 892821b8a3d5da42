"""Service Bus connection settings (Functions convention), validated as the extension does.

``SERVICEBUS`` holds a connection string (including the emulator's
``...;UseDevelopmentEmulator=true`` form with its public placeholder key), or
``SERVICEBUS__fullyQualifiedNamespace`` selects identity-based access through
``DefaultAzureCredential`` (``SERVICEBUS__clientId`` or ``AZURE_CLIENT_ID`` pick a user-assigned
identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from azure.servicebus import parse_connection_string

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CONNECTION_STRING_SETTING = "SERVICEBUS"
NAMESPACE_SETTING = "SERVICEBUS__fullyQualifiedNamespace"
CLIENT_ID_SETTINGS = ("SERVICEBUS__clientId", "AZURE_CLIENT_ID")


class ServiceBusConfigurationError(ValueError):
    """The Service Bus connection settings are missing or malformed."""


@dataclass(frozen=True)
class ServiceBusConnection:
    connection_string: str | None = field(default=None, repr=False)
    fully_qualified_namespace: str | None = None
    client_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ServiceBusConnection:
        connection_string = settings.get(CONNECTION_STRING_SETTING, "").strip()
        namespace = settings.get(NAMESPACE_SETTING, "").strip()
        if connection_string:
            # Fail at start-up on a malformed string, not on the first event (where a
            # non-transient error would park the event as poison).
            try:
                parse_connection_string(connection_string)
            except ValueError as error:
                raise ServiceBusConfigurationError(
                    f"{CONNECTION_STRING_SETTING} is not a Service Bus connection string: {error}"
                ) from None
            return cls(connection_string=connection_string)
        if namespace:
            client_id = next(
                (settings[k].strip() for k in CLIENT_ID_SETTINGS if settings.get(k, "").strip()),
                None,
            )
            return cls(fully_qualified_namespace=namespace, client_id=client_id)
        present = sorted(k for k in settings if k.startswith(f"{CONNECTION_STRING_SETTING}__"))
        hint = f" ({', '.join(present)} alone is not enough)" if present else ""
        raise ServiceBusConfigurationError(
            f"Service Bus is not configured: set {CONNECTION_STRING_SETTING} (a connection string)"
            f" or {NAMESPACE_SETTING} (to use a managed identity){hint}"
        )

    def credential(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        if self.client_id:
            return DefaultAzureCredential(managed_identity_client_id=self.client_id)
        return DefaultAzureCredential()
