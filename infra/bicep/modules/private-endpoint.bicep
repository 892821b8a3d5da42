// One private endpoint in the isolated variant: a network interface in the endpoints subnet for
// one sub-resource (groupId) of one service, with its A record in the service's private DNS zone.
//   Cosmos DB for NoSQL  Sql        privatelink.documents.azure.com
//   Service Bus          namespace  privatelink.servicebus.windows.net
//   Storage (blob)       blob       privatelink.blob.core.windows.net

@description('Name of the private endpoint.')
param name string

@description('Azure region.')
param location string

@description('Tags for the endpoint.')
param tags object = {}

@description('Resource id of the subnet that holds the endpoint.')
param subnetId string

@description('Resource id of the service the endpoint connects to.')
param serviceId string

@description('Sub-resource of the service (Sql, namespace, blob).')
@allowed([
  'Sql'
  'namespace'
  'blob'
])
param groupId string

@description('Resource id of the private DNS zone for that sub-resource.')
param privateDnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: serviceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'zone'
        properties: {
          privateDnsZoneId: privateDnsZoneId
        }
      }
    ]
  }
}

output id string = endpoint.id
