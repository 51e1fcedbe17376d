"""The FastAPI service (see app/main.py)."""

__version__ = "1.0.0"
