// Storage account for ONE function app: the Functions host storage (AzureWebJobsStorage: host
// locks, function keys in azure-webjobs-secrets) and the Flex Consumption deployment container.
// Each app gets its own account so one app's identity can never read the other app's function
// keys. Shared keys are disabled: the app reaches it only with its managed identity.
//
// Role: Storage Blob Data Owner (b7e6dc6d-f1e8-4753-8033-0f276bb0955b) on this account only, as
// the Functions host needs for identity-based AzureWebJobsStorage (it creates its containers and
// manages blob leases). No queue or table role: the apps have no blob/queue triggers, timers or
// Durable Functions, which are what need those, and the app settings name only the blob endpoint
// (AzureWebJobsStorage__blobServiceUri), so the host never derives queue or table endpoints.
//
// With networkIsolation the account refuses every request that does not come through its blob
// private endpoint (public network access off, default action Deny, no trusted-service bypass).

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the account.')
param tags object = {}

@description('Blob container that Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Replication. Standard_LRS works in every region; Standard_ZRS (host storage survives a zone outage) only in regions with availability zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Principal id of the function app identity that owns the blobs of this account.')
param blobDataOwnerPrincipalId string

@description('Isolated variant: no public network access (reached through a private endpoint).')
param networkIsolation bool = false

var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: networkIsolation ? 'None' : 'AzureServices'
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, blobDataOwnerPrincipalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: blobDataOwnerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
