"""The operator CLI (``python -m ops``): streams, consumers' lag, projection rebuilds and dead
letters of a service, on the embedded or the Azure backend. Development and operations only: not
deployed with the function app."""
