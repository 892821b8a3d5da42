// One Python function app on its own Flex Consumption plan (a Flex plan hosts a single app),
// running as a user-assigned managed identity. The app package is deployed to a blob container
// that the app reads with that identity. main.bicep passes the complete app settings: this module
// adds none, so everything the app is configured with is visible in one place. They are set in
// siteConfig at creation, so the host starts with its storage connection already in place.
//
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are deliberately absent: Flex
// Consumption takes the runtime from functionAppConfig.runtime and rejects those settings.
// Likewise siteConfig carries none of the properties Flex Consumption rejects with ARM error 51021
// ("site configuration property ... for Flex Consumption sites is invalid"): ftpsState,
// linuxFxVersion, alwaysOn, use32BitWorkerProcess, preWarmedInstanceCount, functionAppScaleLimit,
// netFrameworkVersion, functionsRuntimeScaleMonitoringEnabled. Flex has no FTP endpoint anyway.

@description('Name of the function app (also its default host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags for the plan and the app.')
param tags object = {}

@description('azd service name in azure.yaml; azd finds the app to deploy by this tag.')
param azdServiceName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob endpoint of the app storage account, e.g. https://<account>.blob.core.windows.net/.')
param storageBlobEndpoint string

@description('Container in that account that holds the deployment package.')
param deploymentContainerName string

@description('Complete app settings (name to value). No keys or connection strings: identity-based connections only.')
param appSettings object

@description('Subnet for VNet integration (delegated to Microsoft.App/environments); empty for none. The app reaches the private endpoints through it.')
param virtualNetworkSubnetId string = ''

@description('Python version.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Memory per instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound for scale-out. Flex Consumption accepts 40 to 1000.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    // Inbound stays public in both variants: the HTTP APIs are the product.
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output apiBaseUrl string = 'https://${site.properties.defaultHostName}/api'
