"""The training worker: turns images on disk into a checkpoint the service reads."""
