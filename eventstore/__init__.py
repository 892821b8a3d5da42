"""Event-sourcing kernel: ports, the commit-document format, the command loop, projections and
publishing helpers, and the adapters (embedded SQLite, Cosmos DB, Service Bus)."""
