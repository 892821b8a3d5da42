"""Adapters of the application ports (the Payments HTTP API, the acquirer, service-to-service
authentication)."""
