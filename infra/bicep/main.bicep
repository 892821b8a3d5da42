// Event-sourced Orders and Payments on Azure Functions (Flex Consumption), Cosmos DB and
// Service Bus. Keyless: every connection uses a user-assigned managed identity, and each identity
// holds only the data-plane roles its own service needs:
//
//   identity   Cosmos DB (Built-in Data Contributor)   Service Bus                              Storage (Blob Data Owner)
//   orders     database orders (with personaldata)     send: topic orders                       its own account
//                                                      receive (+ Data Owner for scaling):
//                                                        topic payments / subscription orders
//   payments   database payments                       send: topic payments,                    its own account
//                                                        queue payment-authorizations
//                                                      receive (+ Data Owner for scaling):
//                                                        queue payment-authorizations
//
// Both apps also hold Monitoring Metrics Publisher on Application Insights (Entra ID ingestion).
//
// Service to service: Orders calls PUT /api/payments/{id} with an Entra ID access token of its
// managed identity for the Payments API application (infra/entra/payments-api.bicep); Payments
// accepts only tokens whose caller object id is the Orders identity. No function key, no secret.
//
// networkIsolation = true adds a virtual network: both apps are VNet-integrated, Cosmos DB,
// Service Bus (then Premium) and both storage accounts are reached through private endpoints and
// have public network access off. The HTTP APIs stay public.
//
// Deploy with `azd up`, or see docs/deploy.md for `az deployment sub create`.

targetScope = 'subscription'

@description('Environment name (azd). Names the resource group and seeds the resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Region for all resources. It must offer Flex Consumption function apps.')
@minLength(1)
param location string

@description('Resource group to create or update. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Cosmos DB database of the Orders service.')
param ordersDatabaseName string = 'orders'

@description('Cosmos DB database of the Payments service.')
param paymentsDatabaseName string = 'payments'

@description('Event store container in each database.')
param eventsContainerName string = 'events'

@description('Projection container in each database.')
param viewsContainerName string = 'views'

@description('Change-feed lease container in each database.')
param leasesContainerName string = 'leases'

@description('Dead-letter container in each database.')
param deadLettersContainerName string = 'deadletters'

@description('Personal-data container of the Orders database (customer details, erasable).')
param personalDataContainerName string = 'personaldata'

@description('Service Bus topic for the Orders integration events.')
param ordersTopicName string = 'orders'

@description('Service Bus topic for the Payments integration events.')
param paymentsTopicName string = 'payments'

@description('Subscription on the payments topic consumed by Orders.')
param paymentsSubscriptionName string = 'orders'

@description('Service Bus queue for payment authorization commands.')
param authorizationsQueueName string = 'payment-authorizations'

@description('Simulated acquirer delay in milliseconds.')
@minValue(0)
param paymentsAcquirerDelayMs int = 1000

@description('The simulated acquirer declines payments above this amount (minor units).')
@minValue(0)
param paymentsDeclineAbove int = 100000

@description('Isolated variant: virtual network, VNet integration of both apps, private endpoints and private DNS for Cosmos DB, Service Bus (Premium) and storage, public network access off on those services.')
param networkIsolation bool = false

@description('Grant each app Azure Service Bus Data Owner on the queue or subscription it receives from, so that scaling reads message counts (see docs/deploy.md for the trade-off).')
param serviceBusScaleMonitoring bool = true

@description('Replication of the two app storage accounts. Standard_ZRS needs a region with availability zones; several Flex Consumption regions (e.g. westus, northcentralus, westcentralus, ukwest) have none.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Upper bound for the scale-out of each function app (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

// ---------------------------------------------------------------- identities

module ordersIdentity 'modules/identity.bicep' = {
  name: 'orders-identity'
  scope: rg
  params: {
    name: 'id-orders-${resourceToken}'
    location: location
    tags: tags
  }
}

module paymentsIdentity 'modules/identity.bicep' = {
  name: 'payments-identity'
  scope: rg
  params: {
    name: 'id-payments-${resourceToken}'
    location: location
    tags: tags
  }
}

// ---------------------------------------------------------------- monitoring

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    telemetryPublisherPrincipalIds: [
      ordersIdentity.outputs.principalId
      paymentsIdentity.outputs.principalId
    ]
  }
}

// ---------------------------------------------------------------- Cosmos DB

module cosmos 'modules/cosmos-account.bicep' = {
  name: 'cosmos-account'
  scope: rg
  params: {
    name: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    networkIsolation: networkIsolation
  }
}

module ordersDatabase 'modules/cosmos-database.bicep' = {
  name: 'orders-database'
  scope: rg
  params: {
    accountName: cosmos.outputs.name
    databaseName: ordersDatabaseName
    eventsContainerName: eventsContainerName
    viewsContainerName: viewsContainerName
    leasesContainerName: leasesContainerName
    deadLettersContainerName: deadLettersContainerName
    personalDataContainerName: personalDataContainerName
    dataContributorPrincipalId: ordersIdentity.outputs.principalId
  }
}

module paymentsDatabase 'modules/cosmos-database.bicep' = {
  name: 'payments-database'
  scope: rg
  params: {
    accountName: cosmos.outputs.name
    databaseName: paymentsDatabaseName
    eventsContainerName: eventsContainerName
    viewsContainerName: viewsContainerName
    leasesContainerName: leasesContainerName
    deadLettersContainerName: deadLettersContainerName
    dataContributorPrincipalId: paymentsIdentity.outputs.principalId
  }
  // Cosmos DB serializes role-assignment writes on one account; run the two modules in turn.
  dependsOn: [
    ordersDatabase
  ]
}

// ---------------------------------------------------------------- Service Bus

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${resourceToken}'
    location: location
    tags: tags
    ordersTopicName: ordersTopicName
    paymentsTopicName: paymentsTopicName
    paymentsSubscriptionName: paymentsSubscriptionName
    authorizationsQueueName: authorizationsQueueName
    networkIsolation: networkIsolation
  }
}

module ordersServiceBusAccess 'modules/servicebus-access.bicep' = {
  name: 'orders-servicebus-access'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    principalId: ordersIdentity.outputs.principalId
    sendTopics: [
      serviceBus.outputs.ordersTopicName
    ]
    receiveSubscriptions: [
      {
        topic: serviceBus.outputs.paymentsTopicName
        subscription: serviceBus.outputs.paymentsSubscriptionName
      }
    ]
    scaleMonitoring: serviceBusScaleMonitoring
  }
}

module paymentsServiceBusAccess 'modules/servicebus-access.bicep' = {
  name: 'payments-servicebus-access'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    principalId: paymentsIdentity.outputs.principalId
    sendTopics: [
      serviceBus.outputs.paymentsTopicName
    ]
    sendQueues: [
      serviceBus.outputs.authorizationsQueueName
    ]
    receiveQueues: [
      serviceBus.outputs.authorizationsQueueName
    ]
    scaleMonitoring: serviceBusScaleMonitoring
  }
}

// ---------------------------------------------------------------- storage (one account per app)

module ordersStorage 'modules/storage.bicep' = {
  name: 'orders-storage'
  scope: rg
  params: {
    name: 'stord${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: 'app-package'
    blobDataOwnerPrincipalId: ordersIdentity.outputs.principalId
    networkIsolation: networkIsolation
  }
}

module paymentsStorage 'modules/storage.bicep' = {
  name: 'payments-storage'
  scope: rg
  params: {
    name: 'stpay${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: 'app-package'
    blobDataOwnerPrincipalId: paymentsIdentity.outputs.principalId
    networkIsolation: networkIsolation
  }
}

// ---------------------------------------------------------------- network (networkIsolation only)

module network 'modules/network.bicep' = if (networkIsolation) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
  }
}

module cosmosEndpoint 'modules/private-endpoint.bicep' = if (networkIsolation) {
  name: 'cosmos-endpoint'
  scope: rg
  params: {
    name: 'pe-cosmos-${resourceToken}'
    location: location
    tags: tags
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    serviceId: cosmos.outputs.id
    groupId: 'Sql'
    privateDnsZoneId: networkIsolation ? network.outputs.cosmosDnsZoneId : ''
  }
}

module serviceBusEndpoint 'modules/private-endpoint.bicep' = if (networkIsolation) {
  name: 'servicebus-endpoint'
  scope: rg
  params: {
    name: 'pe-sb-${resourceToken}'
    location: location
    tags: tags
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    serviceId: serviceBus.outputs.id
    groupId: 'namespace'
    privateDnsZoneId: networkIsolation ? network.outputs.serviceBusDnsZoneId : ''
  }
}

module ordersStorageEndpoint 'modules/private-endpoint.bicep' = if (networkIsolation) {
  name: 'orders-storage-endpoint'
  scope: rg
  params: {
    name: 'pe-stord-${resourceToken}'
    location: location
    tags: tags
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    serviceId: ordersStorage.outputs.id
    groupId: 'blob'
    privateDnsZoneId: networkIsolation ? network.outputs.blobDnsZoneId : ''
  }
}

module paymentsStorageEndpoint 'modules/private-endpoint.bicep' = if (networkIsolation) {
  name: 'payments-storage-endpoint'
  scope: rg
  params: {
    name: 'pe-stpay-${resourceToken}'
    location: location
    tags: tags
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    serviceId: paymentsStorage.outputs.id
    groupId: 'blob'
    privateDnsZoneId: networkIsolation ? network.outputs.blobDnsZoneId : ''
  }
}

// ---------------------------------------------------------------- Payments API application (Entra ID)

module paymentsApi '../entra/payments-api.bicep' = {
  name: 'payments-api-application'
  scope: rg
  params: {
    uniqueName: 'es-payments-api-${resourceToken}'
    displayName: 'Payments API (${environmentName})'
  }
}

// ---------------------------------------------------------------- Payments app

var paymentsAppSettings = {
  SERVICES: 'payments'
  BACKEND: 'azure'
  AZURE_CLIENT_ID: paymentsIdentity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: paymentsStorage.outputs.blobEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: paymentsIdentity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${paymentsIdentity.outputs.clientId};Authorization=AAD'
  COSMOS__accountEndpoint: cosmos.outputs.endpoint
  COSMOS__credential: 'managedidentity'
  COSMOS__clientId: paymentsIdentity.outputs.clientId
  PAYMENTS_DATABASE: paymentsDatabaseName
  EVENTS_CONTAINER: eventsContainerName
  VIEWS_CONTAINER: viewsContainerName
  LEASES_CONTAINER: leasesContainerName
  DEADLETTERS_CONTAINER: deadLettersContainerName
  SERVICEBUS__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  SERVICEBUS__credential: 'managedidentity'
  SERVICEBUS__clientId: paymentsIdentity.outputs.clientId
  PAYMENTS_TOPIC: paymentsTopicName
  AUTHORIZATIONS_QUEUE: authorizationsQueueName
  PAYMENTS_ACQUIRER_DELAY_MS: string(paymentsAcquirerDelayMs)
  PAYMENTS_DECLINE_ABOVE: string(paymentsDeclineAbove)
  // PUT /payments/{id} accepts only Entra ID tokens for the Payments API of the Orders identity.
  PAYMENTS_API_AUTH: 'entra'
  PAYMENTS_API_TENANT_ID: subscription().tenantId
  PAYMENTS_API_AUDIENCE: paymentsApi.outputs.appId
  PAYMENTS_API_ALLOWED_CALLERS: ordersIdentity.outputs.principalId
}

module paymentsApp 'modules/functionapp.bicep' = {
  name: 'payments-app'
  scope: rg
  params: {
    name: 'func-payments-${resourceToken}'
    planName: 'plan-payments-${resourceToken}'
    location: location
    tags: tags
    azdServiceName: 'payments'
    identityId: paymentsIdentity.outputs.id
    storageBlobEndpoint: paymentsStorage.outputs.blobEndpoint
    deploymentContainerName: paymentsStorage.outputs.deploymentContainerName
    maximumInstanceCount: functionMaximumInstanceCount
    appSettings: paymentsAppSettings
    virtualNetworkSubnetId: networkIsolation ? network.outputs.paymentsAppSubnetId : ''
  }
  // The host starts with the app: everything it reaches at start-up exists first. Cosmos DB
  // containers (leases included) and the data-plane role on the database; the Service Bus
  // roles; the storage account and its blob role; the telemetry role; with networkIsolation,
  // the private endpoints (without them the host cannot reach its storage at all).
  dependsOn: [
    paymentsDatabase
    paymentsServiceBusAccess
    paymentsStorage
    monitoring
    cosmosEndpoint
    serviceBusEndpoint
    paymentsStorageEndpoint
  ]
}

// ---------------------------------------------------------------- Orders app

var ordersAppSettings = {
  SERVICES: 'orders'
  BACKEND: 'azure'
  AZURE_CLIENT_ID: ordersIdentity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: ordersStorage.outputs.blobEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: ordersIdentity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${ordersIdentity.outputs.clientId};Authorization=AAD'
  COSMOS__accountEndpoint: cosmos.outputs.endpoint
  COSMOS__credential: 'managedidentity'
  COSMOS__clientId: ordersIdentity.outputs.clientId
  ORDERS_DATABASE: ordersDatabaseName
  EVENTS_CONTAINER: eventsContainerName
  VIEWS_CONTAINER: viewsContainerName
  LEASES_CONTAINER: leasesContainerName
  DEADLETTERS_CONTAINER: deadLettersContainerName
  PERSONALDATA_CONTAINER: personalDataContainerName
  SERVICEBUS__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  SERVICEBUS__credential: 'managedidentity'
  SERVICEBUS__clientId: ordersIdentity.outputs.clientId
  ORDERS_TOPIC: ordersTopicName
  PAYMENTS_TOPIC: paymentsTopicName
  PAYMENTS_SUBSCRIPTION: paymentsSubscriptionName
  PAYMENTS_API_BASE_URL: paymentsApp.outputs.apiBaseUrl
  // Orders' managed identity (AZURE_CLIENT_ID) asks Entra ID for a token for this audience.
  PAYMENTS_API_AUTH: 'entra'
  PAYMENTS_API_AUDIENCE: paymentsApi.outputs.appId
}

module ordersApp 'modules/functionapp.bicep' = {
  name: 'orders-app'
  scope: rg
  params: {
    name: 'func-orders-${resourceToken}'
    planName: 'plan-orders-${resourceToken}'
    location: location
    tags: tags
    azdServiceName: 'orders'
    identityId: ordersIdentity.outputs.id
    storageBlobEndpoint: ordersStorage.outputs.blobEndpoint
    deploymentContainerName: ordersStorage.outputs.deploymentContainerName
    maximumInstanceCount: functionMaximumInstanceCount
    appSettings: ordersAppSettings
    virtualNetworkSubnetId: networkIsolation ? network.outputs.ordersAppSubnetId : ''
  }
  // Same start-up dependencies as the Payments app, for the Orders identity's resources.
  dependsOn: [
    ordersDatabase
    ordersServiceBusAccess
    ordersStorage
    monitoring
    cosmosEndpoint
    serviceBusEndpoint
    ordersStorageEndpoint
  ]
}

// ---------------------------------------------------------------- outputs (azd stores them in .azure/<env>/.env)

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output ORDERS_API_BASE_URL string = ordersApp.outputs.apiBaseUrl
output PAYMENTS_API_BASE_URL string = paymentsApp.outputs.apiBaseUrl
output ORDERS_FUNCTION_APP_NAME string = ordersApp.outputs.name
output PAYMENTS_FUNCTION_APP_NAME string = paymentsApp.outputs.name
output COSMOS_ACCOUNT_NAME string = cosmos.outputs.name
output SERVICEBUS_NAMESPACE_NAME string = serviceBus.outputs.name
output PAYMENTS_API_APP_ID string = paymentsApi.outputs.appId
output NETWORK_ISOLATION bool = networkIsolation
