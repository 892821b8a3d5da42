// One service's Cosmos DB database with its four containers (five for Orders: its customers'
// personal data, apart from the event log so that it can be erased), and the service identity's
// data-plane role ("Cosmos DB Built-in Data Contributor") scoped to this database only.
//
// The lease container is created here because the change-feed trigger cannot create it when it
// connects with a managed identity (control-plane writes are ARM-only on this account).

@description('Name of the existing Cosmos DB account.')
param accountName string

@description('Name of the database (one per service).')
param databaseName string

@description('Event store container (commit documents, partition key /streamId).')
param eventsContainerName string = 'events'

@description('Projection container (view documents, partition key /id).')
param viewsContainerName string = 'views'

@description('Change-feed lease container (partition key /id).')
param leasesContainerName string = 'leases'

@description('Dead-letter container for poison events (partition key /id).')
param deadLettersContainerName string = 'deadletters'

@description('Personal-data container (one document per customer, partition key /id); empty for a service that keeps none.')
param personalDataContainerName string = ''

@description('Principal id of the managed identity that reads and writes this database.')
param dataContributorPrincipalId string

// Cosmos DB Built-in Data Contributor (a Cosmos data-plane role, not an Azure RBAC role).
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: accountName
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

// The only query is the single-partition stream read
//   SELECT * FROM c WHERE c.streamId = @s AND c.version > @v ORDER BY c.version
// so only /streamId and /version are indexed; the event bodies are not.
resource events 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: eventsContainerName
  properties: {
    resource: {
      id: eventsContainerName
      partitionKey: {
        paths: [
          '/streamId'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/streamId/?'
          }
          {
            path: '/version/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

resource views 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: viewsContainerName
  properties: {
    resource: {
      id: viewsContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

resource leases 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: leasesContainerName
  properties: {
    resource: {
      id: leasesContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

resource deadLetters 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: deadLettersContainerName
  properties: {
    resource: {
      id: deadLettersContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

// No change feed reads it and nothing indexes more than the id: erasure replaces the document,
// and no other copy of it is kept in the database.
resource personalData 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = if (!empty(personalDataContainerName)) {
  parent: database
  name: empty(personalDataContainerName) ? 'unused' : personalDataContainerName
  properties: {
    resource: {
      id: personalDataContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: []
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: account
  name: guid(account.id, databaseName, dataContributorPrincipalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: dataContributorPrincipalId
    scope: '${account.id}/dbs/${database.name}'
  }
  // Cosmos DB takes an exclusive account lock for a role-assignment write and rejects it while
  // another control-plane operation runs on the account ("There is another user operation in
  // progress which requires an exclusive lock"); write it after the containers.
  dependsOn: [
    events
    views
    leases
    deadLetters
    personalData
  ]
}

output databaseName string = database.name
