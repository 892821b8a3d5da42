"""Application layer: one use case per command or handler, per service, between the triggers
in functions/ and the pure domain."""
