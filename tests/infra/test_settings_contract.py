"""Settings contract between the function app and the Bicep that hosts it.

For each service ("orders", "payments") the function app is indexed the way the Functions host
indexes it (`function_app.app.get_functions()`, raw binding JSON), in a subprocess whose
environment is exactly the app settings that main.bicep gives that service's app (unresolvable
values replaced by placeholders). Then:

- every binding `connection` is present in its identity-based form (`X__accountEndpoint` for
  Cosmos DB, `X__fullyQualifiedNamespace` for Service Bus) with `X__credential=managedidentity`
  and `X__clientId` (the apps have only user-assigned identities), never as a connection string;
- every `%NAME%` binding expression is an app setting;
- every setting the code reads (`app.settings.SETTINGS_READ_BY_SERVICE`) is an app setting;
- the database, lease container and Service Bus entities the triggers name are the ones this
  app's identity has roles on;
- the host storage (AzureWebJobsStorage) names only the blob endpoint, the one service its
  identity has a role on, so the host does not derive queue and table endpoints;
- the token check between the services: Orders has what app/adapters/entra_auth.py needs to get
  a token for the Payments API, Payments what it needs to accept only the Orders identity;
- no app setting value holds a key: no AccountKey=, SharedAccessKey=, list*() call or Key Vault
  reference.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from app.adapters import entra_auth
from app.bootstrap import payments_api_tokens, payments_api_validator
from app.settings import ServiceAuthSettings, Settings
from tests.infra import bicep_model as bm

ROOT: Path = bm.ROOT
SERVICES = ("orders", "payments")
KEY_MARKERS = ("AccountKey=", "SharedAccessKey=", "SharedAccessSignature=", "@Microsoft.KeyVault")

# Identity-based connection: which sub-setting carries the endpoint, per binding type.
IDENTITY_ENDPOINT = {
    "cosmosdbtrigger": "accountEndpoint",
    "cosmosdb": "accountEndpoint",
    "servicebustrigger": "fullyQualifiedNamespace",
    "servicebus": "fullyQualifiedNamespace",
    "blobtrigger": "serviceUri",
    "blob": "serviceUri",
    "queuetrigger": "queueServiceUri",
    "queue": "queueServiceUri",
    "eventhubtrigger": "fullyQualifiedNamespace",
    "eventhub": "fullyQualifiedNamespace",
}

PLACEHOLDERS = {
    "__accountEndpoint": "https://contract-test.documents.azure.invalid:443/",
    "__fullyQualifiedNamespace": "contract-test.servicebus.invalid",
    "__clientId": "00000000-0000-0000-0000-000000000000",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "__accountName": "contracttest",
    "__blobServiceUri": "https://contracttest.blob.core.invalid/",
    "_TENANT_ID": "00000000-0000-0000-0000-00000000000a",
    "_AUDIENCE": "00000000-0000-0000-0000-00000000000b",
    "_ALLOWED_CALLERS": "00000000-0000-0000-0000-00000000000c",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://contract-test.in.applicationinsights.invalid/"
    ),
    "_URL": "https://contract-test.azurewebsites.invalid/api",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": (
        "ClientId=00000000-0000-0000-0000-000000000000;Authorization=AAD"),
}


# ---------------------------------------------------------------------------- Bicep side


def _app_symbol(service: str) -> str:
    scope = bm.main_scope()
    for symbol in scope.template.module_calls("functionapp.bicep"):
        params = bm.body(scope.template.modules[symbol])["params"]
        if bm.resolve(params["azdServiceName"], scope) == service:
            return str(symbol)
    raise AssertionError(f"main.bicep has no function app for service {service!r}")


@cache
def app_settings_expr(service: str) -> dict[str, Any]:
    """The appSettings object main.bicep passes to the service's app, as pycep JSON."""
    scope = bm.main_scope()
    expr = bm.body(scope.template.modules[_app_symbol(service)])["params"]["appSettings"]
    name = bm.dotted(expr)
    assert name in scope.template.variables, "appSettings must be a variable of main.bicep"
    value: dict[str, Any] = scope.template.variables[name]["value"]
    assert isinstance(value, dict) and "function" not in value and "operator" not in value, (
        f"{name} must be an object literal so that its keys can be checked"
    )
    return {key.strip("'"): v for key, v in value.items()}


@cache
def app_settings(service: str) -> dict[str, Any]:
    """The service's app settings, resolved where possible (else Unresolved)."""
    scope = bm.main_scope()
    return {name: bm.resolve(expr, scope) for name, expr in app_settings_expr(service).items()}


def _placeholder(name: str) -> str:
    for suffix, value in PLACEHOLDERS.items():
        if name.endswith(suffix):
            return value
    return f"contract-test-{name.lower()}"


def environment_for(service: str) -> dict[str, str]:
    """The process environment of the app in Azure, as far as it can be known offline."""
    settings = app_settings(service)
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k in settings or "__" in k or k.startswith(("AZURE_", "COSMOS", "SERVICEBUS")))
    }
    for name, value in settings.items():
        env[name] = value if isinstance(value, str) else _placeholder(name)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def identity_grants(service: str) -> dict[str, Any]:
    """Databases and Service Bus entities that main.bicep grants to the service's identity."""
    scope = bm.main_scope()
    main = scope.template
    principal = f"{service}Identity.outputs.principalId"
    databases = set()
    leases = None
    for symbol in main.module_calls("cosmos-database.bicep"):
        params = bm.body(main.modules[symbol])["params"]
        if bm.dotted(params["dataContributorPrincipalId"]) == principal:
            databases.add(bm.resolve(params["databaseName"], scope))
            leases = bm.resolve(params["leasesContainerName"], scope)
    receive_queues: list[Any] = []
    receive_subscriptions: list[Any] = []
    for symbol in main.module_calls("servicebus-access.bicep"):
        params = bm.body(main.modules[symbol])["params"]
        if bm.dotted(params["principalId"]) == principal:
            receive_queues += bm.resolve(params.get("receiveQueues", []), scope)
            receive_subscriptions += bm.resolve(params.get("receiveSubscriptions", []), scope)
    return {
        "databases": databases,
        "leases": leases,
        "queues": receive_queues,
        "subscriptions": [(s["topic"], s["subscription"]) for s in receive_subscriptions],
    }


# ---------------------------------------------------------------------------- app side

_INDEX_SCRIPT = """
import json
import function_app
functions = [
    {"name": f.get_function_name(), "bindings": [json.loads(b) for b in f.get_raw_bindings()]}
    for f in function_app.app.get_functions()
]
print("@@FUNCTIONS@@" + json.dumps(functions))
"""


@cache
def indexed_functions(service: str) -> list[dict[str, Any]]:
    """Index function_app.py as the Functions host would, with the service's app settings."""
    if not (ROOT / "function_app.py").is_file():
        pytest.fail("function_app.py is missing at the repository root: nothing to check")
    result = subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT],
        cwd=ROOT,
        env=environment_for(service),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    marker = [line for line in result.stdout.splitlines() if line.startswith("@@FUNCTIONS@@")]
    if result.returncode != 0 or not marker:
        pytest.fail(
            f"indexing function_app.py with the {service} app settings from main.bicep failed "
            f"(exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    functions: list[dict[str, Any]] = json.loads(marker[-1].removeprefix("@@FUNCTIONS@@"))
    assert functions, f"function_app.py registers no function with SERVICES={service}"
    return functions


@cache
def settings_read_by_code() -> dict[str, frozenset[str]]:
    try:
        from app.settings import SETTINGS_READ_BY_SERVICE
    except ImportError as error:
        pytest.fail(
            "app.settings.SETTINGS_READ_BY_SERVICE (dict[str, frozenset[str]]: service -> "
            f"settings the code reads) is required by the settings contract: {error}"
        )
    return dict(SETTINGS_READ_BY_SERVICE)


def _expressions(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(re.findall(r"%([^%\s]+)%", value))
    if isinstance(value, dict):
        return set().union(*(_expressions(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_expressions(v) for v in value)) if value else set()
    return set()


def _setting_value(service: str, raw: Any) -> Any:
    """A binding property's value with %NAME% replaced by the app setting's value."""
    if not isinstance(raw, str):
        return raw
    settings = app_settings(service)
    match = re.fullmatch(r"%([^%\s]+)%", raw)
    return settings.get(match.group(1)) if match else raw


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("service", SERVICES)
def test_bicep_app_settings_are_a_checkable_literal(service: str) -> None:
    settings = app_settings(service)
    assert settings["SERVICES"] == service
    assert settings["BACKEND"] == "azure"


@pytest.mark.parametrize("service", SERVICES)
def test_binding_connections_are_identity_based_app_settings(service: str) -> None:
    settings = app_settings(service)
    problems = []
    for function in indexed_functions(service):
        for binding in function["bindings"]:
            connection = binding.get("connection") or binding.get("connectionStringSetting")
            if not connection:
                continue
            where = f"{function['name']} ({binding['type']}) connection {connection!r}"
            if connection in settings:
                problems.append(f"{where}: a connection string setting; use {connection}__*")
            endpoint = IDENTITY_ENDPOINT.get(binding["type"].lower())
            if endpoint is None:
                if not any(k.startswith(connection + "__") for k in settings):
                    problems.append(f"{where}: no {connection}__* setting")
                continue
            for suffix in (endpoint, "credential", "clientId"):
                if f"{connection}__{suffix}" not in settings:
                    problems.append(f"{where}: missing {connection}__{suffix}")
            if settings.get(f"{connection}__credential", "managedidentity") != "managedidentity":
                problems.append(f"{where}: {connection}__credential must be managedidentity")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("service", SERVICES)
def test_binding_expressions_are_app_settings(service: str) -> None:
    settings = app_settings(service)
    missing = {
        f"{function['name']}: %{name}%"
        for function in indexed_functions(service)
        for binding in function["bindings"]
        for name in _expressions(binding)
        if name not in settings
    }
    assert not missing, "binding expressions without an app setting:\n" + "\n".join(sorted(missing))


@pytest.mark.parametrize("service", SERVICES)
def test_settings_the_code_reads_are_app_settings(service: str) -> None:
    declared = settings_read_by_code()
    assert service in declared, f"SETTINGS_READ_BY_SERVICE has no entry for {service!r}"
    settings = app_settings(service)
    missing = sorted(
        name
        for name in declared[service]
        # A connection prefix (e.g. "COSMOS") is satisfied by its identity-based form.
        if name not in settings and not any(k.startswith(name + "__") for k in settings)
    )
    assert not missing, f"{service}: the code reads settings main.bicep does not set: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_cosmos_triggers_use_the_database_and_leases_this_identity_may_use(service: str) -> None:
    grants = identity_grants(service)
    problems = []
    triggers = 0
    for function in indexed_functions(service):
        for binding in function["bindings"]:
            if binding["type"].lower() != "cosmosdbtrigger":
                continue
            triggers += 1
            name = function["name"]
            database = _setting_value(service, binding.get("databaseName"))
            lease_db = _setting_value(service, binding.get("leaseDatabaseName")) or database
            leases = _setting_value(service, binding.get("leaseContainerName") or "leases")
            if database not in grants["databases"] or lease_db not in grants["databases"]:
                problems.append(f"{name}: database {database!r}, grants {grants['databases']}")
            if leases != grants["leases"]:
                problems.append(f"{name}: lease container {leases!r} is not created by Bicep")
            if binding.get("createLeaseContainerIfNotExists") is True:
                problems.append(f"{name}: cannot create its lease container with an identity")
    assert not problems, "\n".join(problems)
    assert triggers >= 2, f"{service}: expected the projector and publisher change-feed triggers"


@pytest.mark.parametrize("service", SERVICES)
def test_service_bus_triggers_receive_from_entities_this_identity_may_receive(
    service: str,
) -> None:
    grants = identity_grants(service)
    problems = []
    for function in indexed_functions(service):
        for binding in function["bindings"]:
            if binding["type"].lower() != "servicebustrigger":
                continue
            name = function["name"]
            queue = _setting_value(service, binding.get("queueName"))
            topic = _setting_value(service, binding.get("topicName"))
            subscription = _setting_value(service, binding.get("subscriptionName"))
            if queue and queue not in grants["queues"]:
                problems.append(f"{name}: no Data Receiver role on queue {queue!r}")
            if topic and (topic, subscription) not in grants["subscriptions"]:
                problems.append(f"{name}: no Data Receiver role on {topic!r}/{subscription!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("service", SERVICES)
def test_no_app_setting_holds_a_key(service: str) -> None:
    problems = []
    for name, expr in app_settings_expr(service).items():
        if bm.calls_list_function(expr):
            problems.append(f"{name}: calls a list*() function (returns keys)")
        texts = [node for node in bm.walk(expr) if isinstance(node, str)]
        resolved = app_settings(service)[name]
        if isinstance(resolved, str):
            texts.append(resolved)
        for marker in KEY_MARKERS:
            if any(marker.lower() in text.lower() for text in texts):
                problems.append(f"{name}: contains {marker}")
        if name in {"AzureWebJobsStorage", "COSMOS", "SERVICEBUS"} or name.endswith("__accountKey"):
            problems.append(f"{name}: a connection string or key setting")
    assert not problems, "\n".join(problems)
    assert not {"PAYMENTS_API_KEY", "PAYMENTS_API_KEY_SECRET_URI"} & set(app_settings(service))


@pytest.mark.parametrize("service", SERVICES)
def test_the_app_runs_as_its_own_user_assigned_identity(service: str) -> None:
    exprs = app_settings_expr(service)
    client_id = f"{service}Identity.outputs.clientId"
    for name in (
        "AZURE_CLIENT_ID",
        "COSMOS__clientId",
        "SERVICEBUS__clientId",
        "AzureWebJobsStorage__clientId",
    ):
        assert bm.dotted(exprs[name]) == client_id, name
    assert exprs["AzureWebJobsStorage__credential"] == "managedidentity"


# AzureWebJobsStorage forms the host reads. `__accountName` (or `__serviceUri`) makes it derive
# the blob, queue and table endpoints of the account; each `__xServiceUri` names one service.
HOST_STORAGE_SERVICE_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri": "blob",
    "AzureWebJobsStorage__queueServiceUri": "queue",
    "AzureWebJobsStorage__tableServiceUri": "table",
    "AzureWebJobsStorage__fileServiceUri": "file",
}
STORAGE_ROLES = {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "blob"}  # Storage Blob Data Owner


@pytest.mark.parametrize("service", SERVICES)
def test_host_storage_names_only_the_blob_endpoint_of_the_apps_own_account(service: str) -> None:
    exprs = app_settings_expr(service)
    host = {name for name in exprs if name.split("__")[0] == "AzureWebJobsStorage"}
    assert host == {
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    }, "no plain AzureWebJobsStorage, no __accountName/__serviceUri (they derive every endpoint)"
    assert bm.dotted(exprs["AzureWebJobsStorage__blobServiceUri"]) == (
        f"{service}Storage.outputs.blobEndpoint"
    )
    # The same account that the app deploys from, and whose blob role its identity holds.
    scope = bm.main_scope()
    (app,) = (s for s in scope.template.module_calls("functionapp.bicep")
              if bm.resolve(bm.body(scope.template.modules[s])["params"]["azdServiceName"],
                            scope) == service)
    app_params = bm.body(scope.template.modules[app])["params"]
    assert bm.dotted(app_params["storageBlobEndpoint"]) == f"{service}Storage.outputs.blobEndpoint"
    storage = bm.module_scope(scope, f"{service}Storage")
    storage_outputs = storage.template.outputs
    assert bm.dotted(storage_outputs["blobEndpoint"]["value"]) == (
        "storage.properties.primaryEndpoints.blob"
    )
    roles = [
        bm.resolve_path([bm.body(r)["properties"]["roleDefinitionId"]["function"]["parameters"]
                         ["resource_name_1"]], storage)
        for r in storage.template.resources_of_type(
            "Microsoft.Authorization/roleAssignments").values()
    ]
    granted = {STORAGE_ROLES.get(role, f"unknown role {role}") for role in roles}
    named = {HOST_STORAGE_SERVICE_SETTINGS[n] for n in host if n in HOST_STORAGE_SERVICE_SETTINGS}
    assert named == granted == {"blob"}, "every endpoint the host uses has a role, and only those"


# ---------------------------------------------------------------------------- token check


def test_orders_has_what_it_needs_to_get_a_token_for_the_payments_api() -> None:
    exprs = app_settings_expr("orders")
    missing = ServiceAuthSettings.CALLER - set(exprs)
    assert not missing, f"orders: token settings main.bicep does not set: {sorted(missing)}"
    assert exprs["PAYMENTS_API_AUTH"] == "entra"
    assert bm.dotted(exprs["PAYMENTS_API_AUDIENCE"]) == "paymentsApi.outputs.appId"
    assert bm.dotted(exprs["AZURE_CLIENT_ID"]) == "ordersIdentity.outputs.clientId"
    # The settings are complete for the code that reads them.
    provider = payments_api_tokens(Settings.from_environ(environment_for("orders")))
    assert isinstance(provider, entra_auth.CachedTokenProvider)
    audience = environment_for("orders")["PAYMENTS_API_AUDIENCE"]
    assert provider.scope == f"{audience}/.default"


def test_payments_accepts_only_tokens_of_the_orders_identity_for_its_own_audience() -> None:
    exprs = app_settings_expr("payments")
    missing = ServiceAuthSettings.VALIDATOR - set(exprs)
    assert not missing, f"payments: token settings main.bicep does not set: {sorted(missing)}"
    assert exprs["PAYMENTS_API_AUTH"] == "entra"
    assert bm.dotted(exprs["PAYMENTS_API_AUDIENCE"]) == "paymentsApi.outputs.appId"
    # The token's oid is the caller's object (principal) id, not its client id.
    assert bm.dotted(exprs["PAYMENTS_API_ALLOWED_CALLERS"]) == (
        "ordersIdentity.outputs.principalId"
    )
    tenant = exprs["PAYMENTS_API_TENANT_ID"]
    # subscription().tenantId: the tenant of the deployment, whose identities call.
    function, *rest = bm.flatten_accessor(tenant)
    assert function["function"]["type"] == "subscription" and rest == ["tenantId"]
    validator = payments_api_validator(Settings.from_environ(environment_for("payments")))
    assert isinstance(validator, entra_auth.EntraTokenValidator)
    assert list(validator.allowed_caller_object_ids) == [
        _placeholder("PAYMENTS_API_ALLOWED_CALLERS")
    ]
    # Only Payments validates: Orders is not configured to accept tokens.
    orders = app_settings_expr("orders")
    assert "PAYMENTS_API_ALLOWED_CALLERS" not in orders
    assert "PAYMENTS_API_TENANT_ID" not in orders
