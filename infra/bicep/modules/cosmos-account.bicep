// Cosmos DB for NoSQL account: serverless, Entra ID only (local/key auth disabled), TLS 1.2,
// continuous backup (point-in-time restore). With networkIsolation the public endpoint is off and
// the apps reach the account through its private endpoint (main.bicep). Databases and containers are in cosmos-database.bicep,
// one module call per service, so each service's data-plane role is scoped to its own database.

@description('Name of the Cosmos DB account (lowercase, 3-44 characters).')
@minLength(3)
@maxLength(44)
param name string

@description('Azure region.')
param location string

@description('Tags for the account.')
param tags object = {}

@description('Continuous backup tier: 7 or 30 days of point-in-time restore.')
@allowed([
  'Continuous7Days'
  'Continuous30Days'
])
param continuousBackupTier string = 'Continuous7Days'

@description('Isolated variant: no public network access (reached through a private endpoint).')
param networkIsolation bool = false

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    // Keyless: only Entra ID principals with a data-plane role can read or write.
    disableLocalAuth: true
    // Control-plane changes (databases, containers, throughput) only through ARM, never with keys.
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    enableAutomaticFailover: false
    enableMultipleWriteLocations: false
    enableFreeTier: false
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: continuousBackupTier
      }
    }
  }
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.documentEndpoint
