// Service Bus namespace, Entra ID only (SAS disabled), TLS 1.2. Standard (topics need at least
// Standard) in the public variant; Premium with networkIsolation, because only Premium has private
// endpoints, and then the public endpoint is off.
//   topic  orders                  integration events of Orders (OrderPlaced, OrderPaid, OrderCancelled)
//   topic  payments                integration events of Payments (PaymentCompleted, PaymentFailed)
//     subscription orders          consumed by the Orders app
//   queue  payment-authorizations  "authorize this payment" commands for the acquirer worker
// Duplicate detection is on for every entity that receives messages: the publishers set
// MessageId = "{streamId}:{version}", so a redelivered change-feed batch is dropped by the broker.
// Duplicate detection cannot be switched on after an entity exists.

@description('Name of the Service Bus namespace.')
@minLength(6)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('Tags for the namespace.')
param tags object = {}

@description('Topic for the Orders integration events.')
param ordersTopicName string = 'orders'

@description('Topic for the Payments integration events.')
param paymentsTopicName string = 'payments'

@description('Subscription on the payments topic that the Orders app consumes.')
param paymentsSubscriptionName string = 'orders'

@description('Queue for payment authorization commands.')
param authorizationsQueueName string = 'payment-authorizations'

@description('Duplicate detection history window (ISO 8601 duration).')
param duplicateDetectionWindow string = 'PT10M'

@description('Deliveries before a message moves to the dead-letter queue.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 10

@description('Peek-lock duration (ISO 8601, at most 5 minutes); the Functions host renews locks.')
param lockDuration string = 'PT1M'

@description('Time to live of messages that are not consumed (ISO 8601 duration).')
param messageTimeToLive string = 'P14D'

@description('Isolated variant: Premium tier (1 messaging unit), no public network access.')
param networkIsolation bool = false

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: networkIsolation ? 'Premium' : 'Standard'
    tier: networkIsolation ? 'Premium' : 'Standard'
    capacity: networkIsolation ? 1 : null
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
  }
}

resource ordersTopic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: ordersTopicName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    supportOrdering: true
    enableBatchedOperations: true
  }
}

resource paymentsTopic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: paymentsTopicName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    supportOrdering: true
    enableBatchedOperations: true
  }
}

resource ordersSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: paymentsTopic
  name: paymentsSubscriptionName
  properties: {
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: messageTimeToLive
    enableBatchedOperations: true
  }
}

resource authorizationsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: authorizationsQueueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    enableBatchedOperations: true
  }
}

output name string = namespace.name
output id string = namespace.id
// "<name>.servicebus.windows.net", the host of the endpoint "https://<name>.servicebus.windows.net:443/".
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output ordersTopicName string = ordersTopic.name
output paymentsTopicName string = paymentsTopic.name
output paymentsSubscriptionName string = ordersSubscription.name
output authorizationsQueueName string = authorizationsQueue.name
