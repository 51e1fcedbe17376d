"""The HTTP service: turns a checkpoint into a FastAPI app with dynamic batching (see shared/DESIGN.md)."""
