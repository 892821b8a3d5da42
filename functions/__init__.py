"""Azure Functions blueprints (one per service) and the thin code around them."""
