"""The REST routes, mounted under ``/flow-server``."""
