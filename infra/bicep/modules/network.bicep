// The virtual network of the isolated variant (main.bicep, networkIsolation = true):
//   snet-orders, snet-payments  VNet integration of one Flex Consumption app each (delegated to
//                               Microsoft.App/environments, as Flex Consumption requires)
//   snet-private-endpoints      the private endpoints of Cosmos DB, Service Bus and both storage
//                               accounts
// and the private DNS zones that make the services' public host names resolve to those
// endpoints inside the network. Each subnet has a network security group with the default rules
// only: the apps need no inbound traffic from the network, and Azure's defaults already allow
// traffic within the virtual network.

@description('Name of the virtual network.')
param name string

@description('Azure region.')
param location string

@description('Tags for all resources.')
param tags object = {}

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet for the VNet integration of the Orders app (at least /26; Flex Consumption recommends /24 for scale-out).')
param ordersAppSubnetPrefix string = '10.40.1.0/24'

@description('Subnet for the VNet integration of the Payments app.')
param paymentsAppSubnetPrefix string = '10.40.2.0/24'

@description('Subnet for the private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.3.0/24'

var appSubnetDelegation = [
  {
    name: 'flex-consumption'
    properties: {
      serviceName: 'Microsoft.App/environments'
    }
  }
]

resource appsNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-apps-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource endpointsNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-endpoints-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-orders'
        properties: {
          addressPrefix: ordersAppSubnetPrefix
          delegations: appSubnetDelegation
          networkSecurityGroup: {
            id: appsNsg.id
          }
        }
      }
      {
        name: 'snet-payments'
        properties: {
          addressPrefix: paymentsAppSubnetPrefix
          delegations: appSubnetDelegation
          networkSecurityGroup: {
            id: appsNsg.id
          }
        }
      }
      {
        name: 'snet-private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Enabled'
          networkSecurityGroup: {
            id: endpointsNsg.id
          }
        }
      }
    ]
  }
}

// One zone per service type; the private endpoints register their A records in them.
resource cosmosZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: 'privatelink.documents.azure.com'
  location: 'global'
  tags: tags
}

resource serviceBusZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: 'privatelink.servicebus.windows.net'
  location: 'global'
  tags: tags
}

resource blobZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: 'privatelink.blob.${environment().suffixes.storage}'
  location: 'global'
  tags: tags
}

resource cosmosZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: cosmosZone
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource serviceBusZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: serviceBusZone
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource blobZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: blobZone
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

output vnetId string = vnet.id
output ordersAppSubnetId string = '${vnet.id}/subnets/snet-orders'
output paymentsAppSubnetId string = '${vnet.id}/subnets/snet-payments'
output privateEndpointSubnetId string = '${vnet.id}/subnets/snet-private-endpoints'
// A module's outputs are available only once all of its resources exist, links included.
output cosmosDnsZoneId string = cosmosZone.id
output serviceBusDnsZoneId string = serviceBusZone.id
output blobDnsZoneId string = blobZone.id
