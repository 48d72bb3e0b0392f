"""federation_bridge."""
