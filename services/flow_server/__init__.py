"""flow_server."""
