"""The HTTP service: ``oracle serve``, a FastAPI app over one engine (see README.md)."""
