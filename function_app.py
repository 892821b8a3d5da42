"""The function app: registers one blueprint per service named in SERVICES (default both), so the
same code deploys as one app (local, `func start`) or as two (Azure, see infra/bicep), and the
API's description (OpenAPI document and docs page) of the services it runs."""

import azure.functions as func

from functions import apidocs, orders, payments, runtime

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_BLUEPRINTS = {"orders": orders.bp, "payments": payments.bp}
for _service in runtime.settings().services:
    app.register_functions(_BLUEPRINTS[_service])
app.register_functions(apidocs.bp)
runtime.start_telemetry()
