"""The HTTP headers of both services' APIs (the service-to-service call uses them too)."""

CORRELATION_HEADER = "X-Correlation-Id"
CAUSATION_HEADER = "X-Causation-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
VIEW_SOURCE_HEADER = "X-View-Source"
RETRY_AFTER_HEADER = "Retry-After"
