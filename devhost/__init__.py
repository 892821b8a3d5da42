"""Local host: runs the function app (function_app.py) unchanged, without Azure Functions Core
Tools, on the embedded backends (or on Cosmos DB / Service Bus with --backend azure)."""
