// Key Vault (Azure RBAC authorization) holding the one secret of the deployment: the Payments
// host function key that Orders sends when it calls PUT /api/payments/{id} (auth level FUNCTION).
// Orders gets it through a Key Vault reference in its app settings, resolved with its
// user-assigned identity, which holds "Key Vault Secrets User"
// (4633458b-17de-408a-b874-0445c86b69e6) on this secret only, not on the vault.
//
// The value is read from the Payments app at deployment time (listKeys on its host, key
// "default"), so it never passes through a parameter, an output or an app setting in clear.

@description('Name of the Key Vault (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('Name of the existing Payments function app whose host function key is stored.')
param paymentsFunctionAppName string

@description('Name of the secret.')
param secretName string = 'payments-api-key'

@description('Principal id of the identity allowed to read the secret (the Orders app).')
param secretReaderPrincipalId string

@description('Purge protection. Off by default so that `azd down --purge` removes the vault; turn on for production.')
param enablePurgeProtection bool = false

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource paymentsApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: paymentsFunctionAppName
}

resource paymentsApiKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: listKeys('${paymentsApp.id}/host/default', '2024-04-01').functionKeys.default
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(paymentsApiKey.id, secretReaderPrincipalId, keyVaultSecretsUserRoleId)
  scope: paymentsApiKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: secretReaderPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
// Versionless URI: App Service resolves the latest version (re-read within 24 h or on restart).
output paymentsApiKeySecretUri string = paymentsApiKey.properties.secretUri
