"""fedalgo."""
