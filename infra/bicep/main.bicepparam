// Parameters for main.bicep. azd fills AZURE_ENV_NAME and AZURE_LOCATION from the environment it
// provisions (`azd env new`, `azd env set AZURE_LOCATION ...`); with `az deployment sub create`
// export them yourself (see docs/deploy.md). Everything else keeps the names the function app
// expects and rarely needs changing.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'es-orders-payments')
param location = readEnvironmentVariable('AZURE_LOCATION', 'eastus')
param resourceGroupName = readEnvironmentVariable('AZURE_RESOURCE_GROUP', '')

param ordersDatabaseName = 'orders'
param paymentsDatabaseName = 'payments'
param eventsContainerName = 'events'
param viewsContainerName = 'views'
param leasesContainerName = 'leases'
param deadLettersContainerName = 'deadletters'
param personalDataContainerName = 'personaldata'

param ordersTopicName = 'orders'
param paymentsTopicName = 'payments'
param paymentsSubscriptionName = 'orders'
param authorizationsQueueName = 'payment-authorizations'

param paymentsAcquirerDelayMs = 1000
param paymentsDeclineAbove = 100000

// Standard_ZRS only in a region with availability zones (eastus has them; westus does not).
param storageSkuName = 'Standard_LRS'

// The isolated variant: `azd env set NETWORK_ISOLATION true` (or export it for az deployment).
param networkIsolation = bool(readEnvironmentVariable('NETWORK_ISOLATION', 'false'))

// Data Owner on the received queue/subscription so that scaling reads message counts.
param serviceBusScaleMonitoring = true
