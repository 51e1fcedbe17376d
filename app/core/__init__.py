"""Settings, error catalogue, logging and metrics shared by the whole service."""
