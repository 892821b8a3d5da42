// Service Bus data-plane roles for one identity, each scoped to a single entity (topic, queue or
// topic subscription), never to the namespace:
//   Azure Service Bus Data Sender    69a216fc-b8fb-44d8-bc22-1f3c2cd27a39
//   Azure Service Bus Data Receiver  4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0
//   Azure Service Bus Data Owner     090c5cfd-751d-490a-894a-3ce6f1109419  (scaleMonitoring only)
//
// Scale monitoring: the Service Bus extension and the Flex Consumption scale controller read the
// message counts of a trigger's queue or subscription with the administration API
// (queue/subscription runtime properties), which needs the Manage claim. With Data Receiver only
// they log that the identity "does not have 'Manage Claim'" and fall back to peeking, which scales
// later and less accurately. No built-in role narrower than Data Owner carries Manage, so with
// scaleMonitoring the identity gets Data Owner on exactly the entities it receives from: it can
// then also change or delete those entities, but no other. See docs/deploy.md.

@description('Name of the existing Service Bus namespace.')
param namespaceName string

@description('Principal id of the managed identity.')
param principalId string

@description('Topics the identity sends to.')
param sendTopics array = []

@description('Queues the identity sends to.')
param sendQueues array = []

@description('Queues the identity receives from.')
param receiveQueues array = []

@description('Topic subscriptions the identity receives from: [{ topic: string, subscription: string }].')
param receiveSubscriptions array = []

@description('Also grant Data Owner on the received entities, so that scaling reads their message counts.')
param scaleMonitoring bool = true

var dataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var dataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var dataOwnerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419'

// The received entities in the same order, or none: index i still names the same entity.
var scaleMonitoredQueues = scaleMonitoring ? receiveQueues : []
var scaleMonitoredSubscriptions = scaleMonitoring ? receiveSubscriptions : []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topicsToSend 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = [for topic in sendTopics: {
  parent: namespace
  name: topic
}]

resource queuesToSend 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = [for queue in sendQueues: {
  parent: namespace
  name: queue
}]

resource queuesToReceive 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = [for queue in receiveQueues: {
  parent: namespace
  name: queue
}]

resource subscriptionsToReceive 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' existing = [for sub in receiveSubscriptions: {
  name: '${namespaceName}/${sub.topic}/${sub.subscription}'
}]

resource topicSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (topic, i) in sendTopics: {
  name: guid(topicsToSend[i].id, principalId, dataSenderRoleId)
  scope: topicsToSend[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSenderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource queueSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in sendQueues: {
  name: guid(queuesToSend[i].id, principalId, dataSenderRoleId)
  scope: queuesToSend[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSenderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource queueReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in receiveQueues: {
  name: guid(queuesToReceive[i].id, principalId, dataReceiverRoleId)
  scope: queuesToReceive[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiverRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource subscriptionReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (sub, i) in receiveSubscriptions: {
  name: guid(subscriptionsToReceive[i].id, principalId, dataReceiverRoleId)
  scope: subscriptionsToReceive[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiverRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource queueScaleMonitors 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in scaleMonitoredQueues: {
  name: guid(queuesToReceive[i].id, principalId, dataOwnerRoleId)
  scope: queuesToReceive[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource subscriptionScaleMonitors 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (sub, i) in scaleMonitoredSubscriptions: {
  name: guid(subscriptionsToReceive[i].id, principalId, dataOwnerRoleId)
  scope: subscriptionsToReceive[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]
