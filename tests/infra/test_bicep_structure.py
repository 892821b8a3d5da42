"""What the Bicep must say, checked on its parsed form (pycep-parser), without Azure.

Partition keys and indexing of the containers, duplicate detection and dead-lettering on Service
Bus, local (key) auth disabled everywhere, one identity per app, role assignments that are each
scoped to the one database, entity or account that its service uses, no key or secret anywhere,
start-up dependencies of the apps, and the two network variants (networkIsolation).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep_model as bm

ROOT: Path = bm.ROOT
BICEP_DIR: Path = bm.BICEP_DIR

SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"  # Azure Service Bus Data Sender
RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"  # Azure Service Bus Data Receiver
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
DATA_OWNER = "090c5cfd-751d-490a-894a-3ce6f1109419"  # Azure Service Bus Data Owner
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

# App settings that Flex Consumption rejects or ignores (functionAppConfig replaces them), and
# siteConfig properties that ARM rejects on a Flex Consumption site with error 51021.
FLEX_REJECTED_APP_SETTINGS = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
)
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "linuxFxVersion",
    "windowsFxVersion",
    "netFrameworkVersion",
    "javaVersion",
    "powerShellVersion",
    "alwaysOn",
    "use32BitWorkerProcess",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
    "functionsRuntimeScaleMonitoringEnabled",
}


def template(name: str) -> Any:
    return bm.Template.load(BICEP_DIR / name)


def props(resource: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = bm.body(resource).get("properties", {})
    return properties


def var_value(tpl: Any, name: str) -> Any:
    return tpl.variables[name]["value"]


def role_id_of(tpl: Any, assignment: dict[str, Any]) -> str:
    """The role definition GUID of a roleAssignments resource (through a variable)."""
    role = props(assignment)["roleDefinitionId"]
    function = role["function"]
    assert function["type"] == "subscription_resource_id", role
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    guid = function["parameters"]["resource_name_1"]
    if isinstance(guid, str) and guid in tpl.variables:
        guid = var_value(tpl, guid)
    assert isinstance(guid, str), role
    return guid


@pytest.fixture(scope="module")
def main() -> Any:
    return bm.Template.load(bm.MAIN)


@pytest.fixture(scope="module")
def scope() -> Any:
    return bm.main_scope()


VARIANTS = {"public": False, "isolated": True}


def variant_scope(isolated: bool) -> Any:
    return bm.main_scope(networkIsolation=isolated)


def resolved_props(parent: Any, module_symbol: str, resource_type: str) -> dict[str, Any]:
    """The properties of the one resource of a type in a module call, resolved in that call."""
    inner = bm.module_scope(parent, module_symbol)
    (resource,) = inner.template.resources_of_type(resource_type).values()
    resolved: dict[str, Any] = bm.resolve(bm.body(resource), inner)
    return resolved


def call_arg(scope: Any, symbol: str, name: str) -> Any:
    return bm.resolve(bm.body(scope.template.modules[symbol])["params"][name], scope)


def call_ref(main: Any, symbol: str, name: str) -> str | None:
    """A module-call argument as a dotted reference, e.g. "ordersIdentity.outputs.principalId"."""
    result: str | None = bm.dotted(bm.body(main.modules[symbol])["params"][name])
    return result


# ---------------------------------------------------------------------------- Cosmos DB


def test_cosmos_account_is_serverless_keyless_tls12_with_continuous_backup() -> None:
    tpl = template("modules/cosmos-account.bicep")
    (account,) = tpl.resources_of_type("Microsoft.DocumentDB/databaseAccounts").values()
    p = props(account)
    assert {"name": "EnableServerless"} in p["capabilities"]
    assert p["disableLocalAuth"] is True
    assert p["disableKeyBasedMetadataWriteAccess"] is True
    assert p["minimalTlsVersion"] == "Tls12"
    assert p["backupPolicy"]["type"] == "Continuous"


def _container_resources() -> dict[str, dict[str, Any]]:
    """The container resources of cosmos-database.bicep, by the parameter that names them."""
    tpl = template("modules/cosmos-database.bicep")
    containers = tpl.resources_of_type(
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    ).values()
    return {props(c)["resource"]["id"]: c for c in containers}


def _containers(database_module: str = "ordersDatabase") -> dict[str, dict[str, Any]]:
    """The containers a database module call creates, by name as deployed."""
    inside = bm.module_scope(bm.main_scope(), database_module)
    return {bm.resolve(param, inside): props(c)["resource"]
            for param, c in _container_resources().items()
            if bm.resolve(param, inside)}


def test_containers_and_partition_keys() -> None:
    containers = _containers()
    assert set(containers) == {"events", "views", "leases", "deadletters", "personaldata"}
    assert containers["events"]["partitionKey"]["paths"] == ["/streamId"]
    for name in ("views", "leases", "deadletters", "personaldata"):
        assert containers[name]["partitionKey"]["paths"] == ["/id"], name
    assert set(_containers("paymentsDatabase")) == {"events", "views", "leases", "deadletters"}


def test_personal_data_has_a_container_of_its_own_in_the_orders_database_only(scope: Any
                                                                              ) -> None:
    tpl = template("modules/cosmos-database.bicep")
    resource = _container_resources()["personalDataContainerName"]
    # Created only where a name is given: Orders keeps personal data, Payments none.
    assert bm.condition_of(resource) == {"operator": {"type": "not", "operands": {"bool_value": {
        "function": {"type": "empty",
                     "parameters": {"item_to_test": "personalDataContainerName"}}}}}}
    assert tpl.params["personalDataContainerName"]["default"] == ""
    assert call_arg(scope, "ordersDatabase", "personalDataContainerName") == "personaldata"
    assert "personalDataContainerName" not in bm.body(
        scope.template.modules["paymentsDatabase"])["params"]
    # Not indexed beyond the id: the only read is a point read by customer id.
    policy = props(resource)["resource"]["indexingPolicy"]
    assert policy["includedPaths"] == [] and [p["path"] for p in policy["excludedPaths"]] == ["/*"]
    # The same roles model: the database-scoped Data Contributor role of the orders identity
    # covers it (test_each_identity_gets_cosmos_data_contributor_on_its_own_database_only), so
    # the Payments identity cannot read or erase personal data.


def test_events_container_indexes_only_what_the_stream_query_needs() -> None:
    # SELECT * FROM c WHERE c.streamId = @s AND c.version > @v ORDER BY c.version
    policy = _containers()["events"]["indexingPolicy"]
    assert policy["indexingMode"] == "consistent"
    assert sorted(p["path"] for p in policy["includedPaths"]) == ["/streamId/?", "/version/?"]
    assert [p["path"] for p in policy["excludedPaths"]] == ["/*"]


def test_container_names_are_the_ones_the_app_settings_name(scope: Any) -> None:
    db_calls = scope.template.module_calls("cosmos-database.bicep")
    for symbol in db_calls:
        for param, expected in [
            ("eventsContainerName", "events"),
            ("viewsContainerName", "views"),
            ("leasesContainerName", "leases"),
            ("deadLettersContainerName", "deadletters"),
        ]:
            assert call_arg(scope, symbol, param) == expected, (symbol, param)
    assert call_arg(scope, "ordersDatabase", "personalDataContainerName") == "personaldata"


def test_each_identity_gets_cosmos_data_contributor_on_its_own_database_only(scope: Any) -> None:
    main = scope.template
    calls = main.module_calls("cosmos-database.bicep")
    grants = {
        call_ref(main, s, "dataContributorPrincipalId"): call_arg(scope, s, "databaseName")
        for s in calls
    }
    assert grants == {
        "ordersIdentity.outputs.principalId": "orders",
        "paymentsIdentity.outputs.principalId": "payments",
    }
    tpl = template("modules/cosmos-database.bicep")
    (assignment,) = tpl.resources_of_type(
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"
    ).values()
    p = props(assignment)
    assert p["roleDefinitionId"].endswith("/sqlRoleDefinitions/${cosmosDataContributorRoleId}")
    assert var_value(tpl, "cosmosDataContributorRoleId") == COSMOS_DATA_CONTRIBUTOR
    assert p["scope"] == "${account.id}/dbs/${database.name}", "scope must be the database"
    assert p["principalId"] == "dataContributorPrincipalId"
    # Cosmos DB rejects a role-assignment write while another control-plane operation holds the
    # account lock, so the assignment waits for every container of its module.
    containers = tpl.resources_of_type(
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    )
    assert set(bm.body(assignment).get("dependsOn", [])) >= set(containers)
    # No other Cosmos role assignment anywhere (e.g. at account scope).
    for path in bm.bicep_files():
        other = bm.Template.load(path)
        found = other.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
        assert path.name == "cosmos-database.bicep" or not found, path.name


# ---------------------------------------------------------------------------- Service Bus


def _sb() -> tuple[Any, dict[str, dict[str, Any]]]:
    tpl = template("modules/servicebus.bicep")
    return tpl, tpl.resources


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_bus_namespace_is_keyless_standard_or_private_premium(variant: str) -> None:
    isolated = VARIANTS[variant]
    namespace = resolved_props(variant_scope(isolated), "serviceBus",
                               "Microsoft.ServiceBus/namespaces")
    # Topics need Standard; private endpoints need Premium.
    tier = "Premium" if isolated else "Standard"
    assert namespace["sku"]["name"] == namespace["sku"]["tier"] == tier
    assert namespace["sku"]["capacity"] == (1 if isolated else None)
    p = namespace["properties"]
    assert p["disableLocalAuth"] is True
    assert p["minimumTlsVersion"] == "1.2"
    assert p["publicNetworkAccess"] == ("Disabled" if isolated else "Enabled")


def test_service_bus_api_version_knows_the_namespace_properties_used() -> None:
    # minimumTlsVersion and publicNetworkAccess are not in the 2021-11-01 namespace schema; the
    # first stable version that has them is 2024-01-01. Use one version for every entity.
    versions = {
        resource["api_version"]
        for path in bm.bicep_files()
        for resource in bm.Template.load(path).resources.values()
        if resource["type"].startswith("Microsoft.ServiceBus/")
    }
    assert versions == {"2024-01-01"}, versions


def test_topics_and_queue_have_duplicate_detection() -> None:
    tpl, _ = _sb()
    entities = {
        **tpl.resources_of_type("Microsoft.ServiceBus/namespaces/topics"),
        **tpl.resources_of_type("Microsoft.ServiceBus/namespaces/queues"),
    }
    names = {tpl.params[bm.body(e)["name"]]["default"] for e in entities.values()}
    assert names == {"orders", "payments", "payment-authorizations"}
    for symbol, entity in entities.items():
        p = props(entity)
        assert p["requiresDuplicateDetection"] is True, symbol
        window = tpl.params[p["duplicateDetectionHistoryTimeWindow"]]["default"]
        assert re.fullmatch(r"PT\d+[MH]", window), window


def test_queue_and_subscription_dead_letter_after_max_deliveries() -> None:
    tpl, resources = _sb()
    queue = tpl.resources_of_type("Microsoft.ServiceBus/namespaces/queues")
    subscriptions = tpl.resources_of_type("Microsoft.ServiceBus/namespaces/topics/subscriptions")
    assert len(queue) == 1 and len(subscriptions) == 1
    for entity in [*queue.values(), *subscriptions.values()]:
        p = props(entity)
        assert 1 <= tpl.params[p["maxDeliveryCount"]]["default"] <= 100
        assert p["deadLetteringOnMessageExpiration"] is True
    (subscription,) = subscriptions.values()
    parent = bm.body(subscription)["parent"]
    assert tpl.params[bm.body(resources[parent])["name"]]["default"] == "payments"
    assert tpl.params[bm.body(subscription)["name"]]["default"] == "orders"


def _sb_grants(scope: Any) -> dict[str | None, dict[str, Any]]:
    main = scope.template
    grants = {}
    for symbol in main.module_calls("servicebus-access.bicep"):
        args = bm.body(main.modules[symbol])["params"]
        principal = call_ref(main, symbol, "principalId")
        grants[principal] = {
            key: bm.resolve(args.get(key, []), scope)
            for key in ("sendTopics", "sendQueues", "receiveQueues", "receiveSubscriptions")
        }
    return grants


def test_service_bus_roles_per_identity_are_the_entities_it_uses(scope: Any) -> None:
    assert _sb_grants(scope) == {
        "ordersIdentity.outputs.principalId": {
            "sendTopics": ["orders"],
            "sendQueues": [],
            "receiveQueues": [],
            "receiveSubscriptions": [{"topic": "payments", "subscription": "orders"}],
        },
        "paymentsIdentity.outputs.principalId": {
            "sendTopics": ["payments"],
            "sendQueues": ["payment-authorizations"],
            "receiveQueues": ["payment-authorizations"],
            "receiveSubscriptions": [],
        },
    }


def test_service_bus_role_assignments_are_scoped_to_entities() -> None:
    tpl = template("modules/servicebus-access.bicep")
    # assignment -> (entity it is scoped to, array it loops over, array of that entity, role)
    expected = {
        "topicSenders": ("topicsToSend", "sendTopics", "sendTopics", SENDER),
        "queueSenders": ("queuesToSend", "sendQueues", "sendQueues", SENDER),
        "queueReceivers": ("queuesToReceive", "receiveQueues", "receiveQueues", RECEIVER),
        "subscriptionReceivers": ("subscriptionsToReceive", "receiveSubscriptions",
                                  "receiveSubscriptions", RECEIVER),
        "queueScaleMonitors": ("queuesToReceive", "scaleMonitoredQueues", "receiveQueues",
                               DATA_OWNER),
        "subscriptionScaleMonitors": ("subscriptionsToReceive", "scaleMonitoredSubscriptions",
                                      "receiveSubscriptions", DATA_OWNER),
    }
    assignments = tpl.resources_of_type("Microsoft.Authorization/roleAssignments")
    assert set(assignments) == set(expected)
    for symbol, (entity, loop_array, entity_array, role) in expected.items():
        config = assignments[symbol]["config"]
        assert config["loop_type"]["detail"]["array_name"] == loop_array, symbol
        scope = bm.body(assignments[symbol])["scope"]["operator"]
        assert scope["type"] == "index_accessor" and scope["operands"]["operand_1"] == entity
        assert role_id_of(tpl, assignments[symbol]) == role, symbol
        existing = tpl.resources[entity]
        assert existing["existing"] is True
        assert existing["config"]["loop_type"]["detail"]["array_name"] == entity_array
    entity_types = {tpl.resources[e]["type"] for e, _, _, _ in expected.values()}
    assert "Microsoft.ServiceBus/namespaces" not in entity_types


@pytest.mark.parametrize("monitoring", [True, False])
def test_data_owner_for_scaling_covers_exactly_the_received_entities(monitoring: bool) -> None:
    # Data Owner (Manage) lets the scale controller read message counts; it must name the same
    # entities as Data Receiver (index i of the monitored array is index i of the received one),
    # and none when the parameter is off.
    main = bm.main_scope(serviceBusScaleMonitoring=monitoring)
    for symbol in main.template.module_calls("servicebus-access.bicep"):
        inner = bm.module_scope(main, symbol)
        assert bm.resolve_path(["scaleMonitoring"], inner) is monitoring
        for monitored, received in [("scaleMonitoredQueues", "receiveQueues"),
                                    ("scaleMonitoredSubscriptions", "receiveSubscriptions")]:
            expected = bm.resolve_path([received], inner) if monitoring else []
            assert bm.resolve_path([monitored], inner) == expected, (symbol, monitored)
    assert main.template.params["serviceBusScaleMonitoring"]["default"] is True


# ---------------------------------------------------------------------------- storage, apps


def test_storage_is_keyless_and_each_app_owns_only_its_own_account(scope: Any) -> None:
    tpl = template("modules/storage.bicep")
    (account,) = tpl.resources_of_type("Microsoft.Storage/storageAccounts").values()
    p = props(account)
    assert p["allowSharedKeyAccess"] is False
    assert p["allowBlobPublicAccess"] is False
    assert p["minimumTlsVersion"] == "TLS1_2"
    (assignment,) = tpl.resources_of_type("Microsoft.Authorization/roleAssignments").values()
    assert role_id_of(tpl, assignment) == BLOB_DATA_OWNER
    assert bm.body(assignment)["scope"] == "storage"

    main = scope.template
    calls = main.module_calls("storage.bicep")
    owners = {call_ref(main, s, "blobDataOwnerPrincipalId") for s in calls}
    assert owners == {"ordersIdentity.outputs.principalId", "paymentsIdentity.outputs.principalId"}
    assert len(calls) == 2
    apps = main.module_calls("functionapp.bicep")
    for symbol in apps:
        service = call_arg(scope, symbol, "azdServiceName")
        storage = call_ref(main, symbol, "storageBlobEndpoint")
        assert storage == f"{service}Storage.outputs.blobEndpoint", symbol
        assert call_ref(main, symbol, "identityId") == f"{service}Identity.outputs.id", symbol
        settings = bm.resolve_path([f"{service}AppSettings"], scope)
        assert bm.dotted(bm.body(main.modules[symbol])["params"]["appSettings"]) == (
            f"{service}AppSettings"
        )
        assert settings["SERVICES"] == service


def test_function_apps_are_flex_consumption_python_311_with_user_assigned_identity(
    main: Any,
) -> None:
    tpl = template("modules/functionapp.bicep")
    (plan,) = tpl.resources_of_type("Microsoft.Web/serverfarms").values()
    assert bm.body(plan)["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = tpl.resources_of_type("Microsoft.Web/sites").values()
    site_body = bm.body(site)
    assert site_body["identity"]["type"] == "UserAssigned"
    p = props(site)
    assert p["httpsOnly"] is True
    assert "keyVaultReferenceIdentity" not in p, "no Key Vault references: the apps hold no secret"
    assert p["siteConfig"]["minTlsVersion"] == "1.2"
    config = p["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert tpl.params[config["runtime"]["version"]]["default"] == "3.11"
    auth = config["deployment"]["storage"]["authentication"]
    assert auth == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    app_settings = p["siteConfig"]["appSettings"]
    assert app_settings["loop_type"]["detail"]["array_name"]["function"]["type"] == "items"
    # Flex Consumption rejects these; the runtime comes from functionAppConfig.runtime.
    text = (BICEP_DIR / "modules/functionapp.bicep").read_text()
    main_text = bm.MAIN.read_text()
    for forbidden in FLEX_REJECTED_APP_SETTINGS:
        assert f"{forbidden}:" not in text and f"{forbidden}:" not in main_text, forbidden
    # ARM rejects these siteConfig properties on Flex Consumption sites (error 51021).
    rejected = set(p["siteConfig"]) & FLEX_REJECTED_SITE_CONFIG
    assert not rejected, f"siteConfig properties Flex Consumption rejects: {sorted(rejected)}"
    # Flex Consumption accepts a maximum instance count of 40 to 1000.
    for owner, param in [(tpl, "maximumInstanceCount"), (main, "functionMaximumInstanceCount")]:
        bounds = {d["type"]: d["argument"] for d in owner.params[param]["decorators"]}
        assert bounds.get("min_value", 0) >= 40 and bounds.get("max_value", 10**6) <= 1000, param
        assert 40 <= owner.params[param]["default"] <= 1000, param


def test_two_apps_one_identity_each(scope: Any) -> None:
    main = scope.template
    identities = main.module_calls("identity.bicep")
    assert set(identities) == {"ordersIdentity", "paymentsIdentity"}
    apps = main.module_calls("functionapp.bicep")
    services = {call_arg(scope, s, "azdServiceName") for s in apps}
    assert services == {"orders", "payments"}


# ------------------------------------------------------------------------ keyless, start-up order


def test_no_key_vault_no_secret_and_no_list_keys_anywhere() -> None:
    for path in bm.bicep_files():
        tpl = bm.Template.load(path)
        for symbol, resource in tpl.resources.items():
            assert not resource["type"].startswith("Microsoft.KeyVault/"), f"{path.name}:{symbol}"
            assert not bm.calls_list_function(resource), f"{path.name}:{symbol} calls list*()"
        for name, output in tpl.outputs.items():
            assert not bm.calls_list_function(output), f"{path.name}: output {name} leaks a key"
        for name, variable in tpl.variables.items():
            assert not bm.calls_list_function(variable), f"{path.name}: variable {name}"
        text = path.read_text()
        for marker in ("AccountKey=", "SharedAccessKey=", "listConnectionStrings", "listKeys",
                       "@Microsoft.KeyVault", "functionKeys"):
            assert marker not in text, f"{path.name} contains {marker}"


def test_the_payments_api_is_an_entra_application_without_credentials(scope: Any) -> None:
    main = scope.template
    (symbol,) = main.module_calls("payments-api.bicep")
    assert main.module_path(symbol).parent == bm.ENTRA_DIR
    unique = call_arg(scope, symbol, "uniqueName")
    assert isinstance(unique, bm.Unresolved) and "resourceToken" in unique.what, (
        "one application per environment: the unique name carries the resource token"
    )
    tpl = main.module_template(symbol)
    (application,) = tpl.resources_of_type("Microsoft.Graph/applications").values()
    app = bm.body(application)
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["api"]["requestedAccessTokenVersion"] == 2
    # Nobody signs in as the API: no secret, certificate, federated credential or redirect URI.
    for forbidden in ("passwordCredentials", "keyCredentials", "web", "spa", "publicClient"):
        assert forbidden not in app, forbidden
    assert not tpl.resources_of_type("Microsoft.Graph/applications/federatedIdentityCredentials")
    (principal,) = tpl.resources_of_type("Microsoft.Graph/servicePrincipals").values()
    assert bm.dotted(bm.body(principal)["appId"]) == "application.appId"
    assert bm.dotted(tpl.outputs["appId"]["value"]) == "application.appId"


# What each app's host reaches when it starts, by module symbol: its database (containers,
# leases included, and the Cosmos role), its Service Bus roles, its storage account (and blob
# role), telemetry, and in the isolated variant the private endpoints it goes through.
START_UP_DEPENDENCIES = {
    "orders": {"ordersDatabase", "ordersServiceBusAccess", "ordersStorage", "monitoring",
               "cosmosEndpoint", "serviceBusEndpoint", "ordersStorageEndpoint"},
    "payments": {"paymentsDatabase", "paymentsServiceBusAccess", "paymentsStorage", "monitoring",
                 "cosmosEndpoint", "serviceBusEndpoint", "paymentsStorageEndpoint"},
}


@pytest.mark.parametrize("service", START_UP_DEPENDENCIES)
def test_apps_start_after_everything_their_host_reaches_at_start_up(
    scope: Any, service: str
) -> None:
    main = scope.template
    (app,) = (s for s in main.module_calls("functionapp.bicep")
              if call_arg(scope, s, "azdServiceName") == service)
    depends_on = set(bm.body(main.modules[app]).get("dependsOn", []))
    missing = START_UP_DEPENDENCIES[service] - depends_on
    assert not missing, f"{app} does not wait for {sorted(missing)}"
    # The modules named there are the ones that hold the roles and containers.
    database = main.module_path(f"{service}Database").name
    assert database == "cosmos-database.bicep"
    assert call_ref(main, f"{service}Database", "dataContributorPrincipalId") == (
        f"{service}Identity.outputs.principalId"
    )
    assert call_ref(main, f"{service}ServiceBusAccess", "principalId") == (
        f"{service}Identity.outputs.principalId"
    )
    assert call_ref(main, f"{service}Storage", "blobDataOwnerPrincipalId") == (
        f"{service}Identity.outputs.principalId"
    )
    leases = template("modules/cosmos-database.bicep").resources["leases"]
    assert leases["type"].endswith("/containers"), "the lease container is created with the rest"


# ---------------------------------------------------------------------------- monitoring


def test_application_insights_takes_entra_id_telemetry_from_both_identities(scope: Any) -> None:
    tpl = template("modules/monitoring.bicep")
    (component,) = tpl.resources_of_type("Microsoft.Insights/components").values()
    assert props(component)["DisableLocalAuth"] is True
    assert bm.dotted(props(component)["WorkspaceResourceId"]) == "logAnalytics.id"
    (assignment,) = tpl.resources_of_type("Microsoft.Authorization/roleAssignments").values()
    assert role_id_of(tpl, assignment) == MONITORING_METRICS_PUBLISHER
    assert bm.body(assignment)["scope"] == "applicationInsights"
    main = scope.template
    publishers = bm.body(main.modules["monitoring"])["params"]["telemetryPublisherPrincipalIds"]
    assert sorted(str(bm.dotted(p)) for p in publishers) == [
        "ordersIdentity.outputs.principalId",
        "paymentsIdentity.outputs.principalId",
    ]


# ---------------------------------------------------------------------------- all role assignments


def test_every_role_assignment_has_an_explicit_narrow_scope() -> None:
    # Without `scope:` a role assignment applies to the whole resource group.
    for path in bm.bicep_files():
        tpl = bm.Template.load(path)
        for symbol, resource in tpl.resources_of_type(
            "Microsoft.Authorization/roleAssignments"
        ).items():
            assert "scope" in bm.body(resource), f"{path.name}:{symbol} has no scope"
            assert props(resource)["principalType"] == "ServicePrincipal", symbol


# ---------------------------------------------------------------------------- outputs, azd, checkov


def test_outputs_name_both_api_base_urls(main: Any) -> None:
    for output, module in [
        ("ORDERS_API_BASE_URL", "ordersApp"),
        ("PAYMENTS_API_BASE_URL", "paymentsApp"),
    ]:
        assert bm.dotted(main.outputs[output]["value"]) == f"{module}.outputs.apiBaseUrl"
    app = template("modules/functionapp.bicep")
    assert app.outputs["apiBaseUrl"]["value"] == "https://${site.properties.defaultHostName}/api"


def test_azure_yaml_deploys_both_apps_from_the_repository_root(scope: Any) -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert re.search(r"(?m)^infra:\n(?:  .*\n)*  path: infra/bicep$", text), "infra path"
    services = dict(re.findall(r"(?m)^  (\w+):\n((?:    .*\n?)+)", text.split("services:", 1)[1]))
    assert set(services) == {"orders", "payments"}
    for name, block in services.items():
        assert re.search(r"(?m)^    project: \.$", block), name
        assert re.search(r"(?m)^    host: function$", block), name
        assert re.search(r"(?m)^    language: python$", block), name
    apps = scope.template.module_calls("functionapp.bicep")
    assert {call_arg(scope, s, "azdServiceName") for s in apps} == set(services)


def test_literals_do_not_shadow_parameter_or_variable_names() -> None:
    # pycep renders `'x'` and the identifier `x` the same way; the evaluator reads such a string
    # as a reference. Keep the templates unambiguous: no literal equal to a name in scope.
    for path in bm.bicep_files():
        tpl = bm.Template.load(path)
        names = set(tpl.params) | set(tpl.variables)
        quoted = set(re.findall(r"'([A-Za-z_]\w*)'", path.read_text()))
        assert not (quoted & names), f"{path.name}: literal(s) {sorted(quoted & names)}"


def test_checkov_skips_each_have_a_reason() -> None:
    config = (ROOT / "infra" / "checkov.yaml").read_text().splitlines()
    in_skips = False
    skipped = []
    for line in config:
        if re.match(r"^skip-check:", line):
            in_skips = True
            continue
        if in_skips and re.match(r"^\S", line):
            in_skips = False
        if in_skips and (m := re.match(r"^\s+-\s+(CKV\w+)\s*(#\s*(.*))?$", line)):
            skipped.append(m.group(1))
            assert m.group(3) and len(m.group(3)) > 20, f"{m.group(1)}: give a reason"
    assert skipped, "no skip-check list found"
    assert len(skipped) == len(set(skipped)), "a check is skipped twice"
