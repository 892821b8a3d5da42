"""Integration contracts: the versioned messages the services exchange over Service Bus.

They are a public API between services, separate from (and more stable than) domain events.
"""
