"""The gateway: FastAPI app (``app.create_app``), its routes, guards and the rank-change feed."""
