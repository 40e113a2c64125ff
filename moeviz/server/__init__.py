"""Server layer: FastAPI app over one engine, a websocket per page (docs/protocol.md)."""
from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
