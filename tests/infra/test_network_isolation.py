"""The two network variants of main.bicep (param networkIsolation) and their checkov rendering.

Isolated: a virtual network, both apps VNet-integrated into their own delegated subnet, private
endpoints with private DNS for Cosmos DB, Service Bus and both storage accounts, and public
network access off on exactly those services. Public: none of that. infra/bicep_variants.py
renders each variant as plain Bicep for checkov; its skip tags decide which checkov skips apply.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from infra import bicep_variants
from tests.infra import bicep_model as bm

ROOT: Path = bm.ROOT
CONDITIONAL_MODULES = {
    "network",
    "cosmosEndpoint",
    "serviceBusEndpoint",
    "ordersStorageEndpoint",
    "paymentsStorageEndpoint",
}
# endpoint module -> (service module whose id it connects, groupId, DNS zone output of network)
ENDPOINTS = {
    "cosmosEndpoint": ("cosmos", "Sql", "cosmosDnsZoneId"),
    "serviceBusEndpoint": ("serviceBus", "namespace", "serviceBusDnsZoneId"),
    "ordersStorageEndpoint": ("ordersStorage", "blob", "blobDnsZoneId"),
    "paymentsStorageEndpoint": ("paymentsStorage", "blob", "blobDnsZoneId"),
}
ZONES = {
    "cosmosZone": "privatelink.documents.azure.com",
    "serviceBusZone": "privatelink.servicebus.windows.net",
    "blobZone": "privatelink.blob.${environment().suffixes.storage}",
}


@pytest.fixture(scope="module")
def main() -> bm.Template:
    return bm.Template.load(bm.MAIN)


def isolated_only(expr: Any) -> str | None:
    """`networkIsolation ? a.b.c : ''` -> "a.b.c"; None for any other form."""
    if not (isinstance(expr, dict) and expr.get("operator", {}).get("type") == "conditional"):
        return None
    operands = expr["operator"]["operands"]
    if operands["condition"] != "networkIsolation" or operands["false_value"] != "":
        return None
    return bm.dotted(operands["true_value"])


def args(main: bm.Template, symbol: str) -> dict[str, Any]:
    params: dict[str, Any] = bm.body(main.modules[symbol])["params"]
    return params


# ---------------------------------------------------------------------------- main.bicep


def test_network_isolation_is_an_opt_in_parameter(main: bm.Template) -> None:
    param = main.params["networkIsolation"]
    assert param["type"] == "bool" and param["default"] is False
    text = bm.PARAMS_FILE.read_text()
    assert re.search(
        r"(?m)^param networkIsolation = bool\(readEnvironmentVariable\('NETWORK_ISOLATION', "
        r"'false'\)\)$", text
    ), "azd env set NETWORK_ISOLATION true switches the variant"


def test_exactly_the_network_modules_are_conditional_on_the_variant(main: bm.Template) -> None:
    conditional = {s for s, m in main.modules.items() if bm.condition_of(m) is not None}
    assert conditional == CONDITIONAL_MODULES
    for symbol in conditional:
        assert bm.condition_of(main.modules[symbol]) == "networkIsolation", symbol


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_each_private_endpoint_connects_its_service_through_its_dns_zone(
    main: bm.Template, endpoint: str
) -> None:
    service, group, zone_output = ENDPOINTS[endpoint]
    assert main.module_path(endpoint).name == "private-endpoint.bicep"
    call = args(main, endpoint)
    assert bm.dotted(call["serviceId"]) == f"{service}.outputs.id"
    assert call["groupId"] == group
    assert isolated_only(call["subnetId"]) == "network.outputs.privateEndpointSubnetId"
    assert isolated_only(call["privateDnsZoneId"]) == f"network.outputs.{zone_output}"
    module = main.module_template(endpoint)
    assert group in next(d["argument"] for d in module.params["groupId"]["decorators"]
                         if d["type"] == "allowed")


def test_each_app_is_integrated_into_its_own_subnet(main: bm.Template) -> None:
    scope = bm.main_scope()
    subnets = {}
    for symbol in main.module_calls("functionapp.bicep"):
        service = bm.resolve(args(main, symbol)["azdServiceName"], scope)
        subnets[service] = isolated_only(args(main, symbol)["virtualNetworkSubnetId"])
    assert subnets == {
        "orders": "network.outputs.ordersAppSubnetId",
        "payments": "network.outputs.paymentsAppSubnetId",
    }
    site = bm.body(next(iter(bm.Template.load(
        bm.BICEP_DIR / "modules/functionapp.bicep"
    ).resources_of_type("Microsoft.Web/sites").values())))
    subnet = site["properties"]["virtualNetworkSubnetId"]["operator"]["operands"]
    assert subnet["condition"]["function"]["type"] == "empty"
    assert subnet["true_value"] is None and subnet["false_value"] == "virtualNetworkSubnetId"


@pytest.mark.parametrize("isolated", [False, True])
def test_public_network_access_is_off_exactly_where_an_endpoint_leads(isolated: bool) -> None:
    scope = bm.main_scope(networkIsolation=isolated)
    access = {}
    for symbol, resource_type in [
        ("cosmos", "Microsoft.DocumentDB/databaseAccounts"),
        ("serviceBus", "Microsoft.ServiceBus/namespaces"),
        ("ordersStorage", "Microsoft.Storage/storageAccounts"),
        ("paymentsStorage", "Microsoft.Storage/storageAccounts"),
    ]:
        inner = bm.module_scope(scope, symbol)
        (resource,) = inner.template.resources_of_type(resource_type).values()
        properties = bm.resolve(bm.body(resource), inner)["properties"]
        access[symbol] = properties["publicNetworkAccess"]
        if resource_type.startswith("Microsoft.Storage"):
            acls = properties["networkAcls"]
            assert acls["defaultAction"] == ("Deny" if isolated else "Allow"), symbol
            assert acls["bypass"] == ("None" if isolated else "AzureServices"), symbol
    expected = "Disabled" if isolated else "Enabled"
    assert access == dict.fromkeys(access, expected)
    assert {ENDPOINTS[e][0] for e in ENDPOINTS} == set(access)


def test_the_http_apis_stay_public_in_both_variants() -> None:
    site = bm.body(next(iter(bm.Template.load(
        bm.BICEP_DIR / "modules/functionapp.bicep"
    ).resources_of_type("Microsoft.Web/sites").values())))
    assert site["properties"]["publicNetworkAccess"] == "Enabled"


# ---------------------------------------------------------------------------- network.bicep


def _network() -> bm.Template:
    return bm.Template.load(bm.BICEP_DIR / "modules/network.bicep")


def test_subnets_are_delegated_to_flex_consumption_and_have_security_groups() -> None:
    network = _network()
    (vnet,) = network.resources_of_type("Microsoft.Network/virtualNetworks").values()
    subnets = {s["name"]: s["properties"] for s in bm.body(vnet)["properties"]["subnets"]}
    assert set(subnets) == {"snet-orders", "snet-payments", "snet-private-endpoints"}
    delegation = network.variables["appSubnetDelegation"]["value"]
    assert [d["properties"]["serviceName"] for d in delegation] == ["Microsoft.App/environments"]
    for name in ("snet-orders", "snet-payments"):
        assert subnets[name]["delegations"] == "appSubnetDelegation", name
    assert "delegations" not in subnets["snet-private-endpoints"]
    groups = network.resources_of_type("Microsoft.Network/networkSecurityGroups")
    for name, subnet in subnets.items():
        nsg = bm.dotted(subnet["networkSecurityGroup"]["id"])
        assert nsg is not None and nsg.removesuffix(".id") in groups, name
    for output, subnet_name in [("ordersAppSubnetId", "snet-orders"),
                                ("paymentsAppSubnetId", "snet-payments"),
                                ("privateEndpointSubnetId", "snet-private-endpoints")]:
        assert network.outputs[output]["value"] == f"${{vnet.id}}/subnets/{subnet_name}"


def test_each_private_dns_zone_is_linked_to_the_network() -> None:
    network = _network()
    zones = network.resources_of_type("Microsoft.Network/privateDnsZones")
    assert {s: bm.body(z)["name"] for s, z in zones.items()} == ZONES
    links = network.resources_of_type("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    linked = {}
    for link in links.values():
        config = bm.body(link)
        assert config["properties"]["registrationEnabled"] is False
        assert bm.dotted(config["properties"]["virtualNetwork"]["id"]) == "vnet.id"
        linked[config["parent"]] = True
    assert set(linked) == set(zones)
    for _, _, zone_output in ENDPOINTS.values():
        zone = bm.dotted(network.outputs[zone_output]["value"])
        assert zone is not None and zone.removesuffix(".id") in zones


def test_the_private_endpoint_registers_in_its_zone() -> None:
    endpoint = bm.Template.load(bm.BICEP_DIR / "modules/private-endpoint.bicep")
    (group,) = endpoint.resources_of_type(
        "Microsoft.Network/privateEndpoints/privateDnsZoneGroups").values()
    (config,) = bm.body(group)["properties"]["privateDnsZoneConfigs"]
    assert config["properties"]["privateDnsZoneId"] == "privateDnsZoneId"
    (pe,) = endpoint.resources_of_type("Microsoft.Network/privateEndpoints").values()
    (connection,) = bm.body(pe)["properties"]["privateLinkServiceConnections"]
    assert connection["properties"]["groupIds"] == ["groupId"]
    assert connection["properties"]["privateLinkServiceId"] == "serviceId"


# ---------------------------------------------------------------------------- rendering for checkov


@pytest.mark.parametrize("variant", bicep_variants.VARIANTS)
def test_each_variant_renders_to_plain_bicep_that_pycep_parses(
    tmp_path: Path, variant: str
) -> None:
    written = bicep_variants.render_tree(bm.BICEP_DIR, tmp_path, variant)
    rendered = [p for p in written if p.suffix == ".bicep"]
    assert {p.relative_to(tmp_path) for p in rendered} == {
        p.relative_to(bm.BICEP_DIR) for p in bm.BICEP_DIR.rglob("*.bicep")
    }
    access = set()
    for path in rendered:
        text = path.read_text()
        assert not re.search(r"networkIsolation\s*\?", text), path.name
        BicepParser().parse(file_path=path)
        access |= set(re.findall(r"publicNetworkAccess: '(\w+)'", text))
    expected = {"Enabled", "Disabled"} if variant == "isolated" else {"Enabled"}
    assert access == expected  # isolated: the apps stay Enabled, the data services Disabled
    main = (tmp_path / "main.bicep").read_text()
    assert f"param networkIsolation bool = {str(variant == 'isolated').lower()}" in main


@pytest.mark.parametrize(
    "expression",
    [
        "x: networkIsolation && other ? 'a' : 'b'",
        "x: !networkIsolation",
        "x: networkIsolation ? { a: 1 } : {}",
        "x: networkIsolation ? concat('a', 'b') : 'c'",
    ],
)
def test_rendering_refuses_forms_it_cannot_resolve(expression: str) -> None:
    with pytest.raises(bicep_variants.VariantError, match="networkIsolation"):
        bicep_variants.render(f"param networkIsolation bool = false\n{expression}\n", "public")


def test_rendering_resolves_simple_ternaries_and_ignores_comments_and_strings() -> None:
    text = (
        "param networkIsolation bool = false\n"
        "// networkIsolation ? is only mentioned here\n"
        "@description('networkIsolation turns things off')\n"
        "x: networkIsolation ? 'Disabled' : 'Enabled'\n"
        "y: networkIsolation ? network.outputs.id : ''\n"
        "z: networkIsolation ? 1 : null\n"
        "module m 'm.bicep' = if (networkIsolation) {\n"
        "  networkIsolation: networkIsolation\n"
    )
    isolated = bicep_variants.render(text, "isolated")
    assert "x: 'Disabled'\ny: network.outputs.id\nz: 1\n" in isolated
    assert "param networkIsolation bool = true" in isolated
    public = bicep_variants.render(text, "public")
    assert "x: 'Enabled'\ny: ''\nz: null\n" in public
    with pytest.raises(bicep_variants.VariantError, match="variant"):
        bicep_variants.render(text, "private")


def test_checkov_skips_are_tagged_per_variant() -> None:
    config = (ROOT / "infra" / "checkov.yaml").read_text()
    public = bicep_variants.skipped_checks(config, "public")
    isolated = bicep_variants.skipped_checks(config, "isolated")
    # The network checks the public variant cannot pass are exactly the ones isolation fixes.
    only_public = set(public) - set(isolated)
    assert only_public == {"CKV_AZURE_35", "CKV_AZURE_59", "CKV_AZURE_101"}
    assert set(isolated) - set(public) == {"CKV_AZURE_36"}
    for reason in [*public.values(), *isolated.values()]:
        assert len(reason) > 20, reason
    with pytest.raises(bicep_variants.VariantError, match="tag"):
        bicep_variants.skipped_checks("skip-check:\n  - CKV_AZURE_1  # no tag here\n", "public")


def test_run_checkov_checks_both_variants() -> None:
    script = (ROOT / "infra" / "run-checkov.sh").read_text()
    assert re.search(r"for variant in public isolated; do", script)
    assert "infra/bicep_variants.py render infra/bicep" in script
    assert "infra/bicep_variants.py skips infra/checkov.yaml" in script
    assert "--skip-check" in script and "exit \"$status\"" in script
