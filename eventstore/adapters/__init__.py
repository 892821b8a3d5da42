"""Adapters for Azure services: Cosmos DB stores and the Service Bus publisher."""
