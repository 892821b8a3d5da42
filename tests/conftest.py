"""Root conftest: registers shared test plugins (fixtures usable from every test folder)."""

pytest_plugins = ["tests.support.cosmos_server"]
