"""The REST API (FastAPI): thin routers over controller.service."""
