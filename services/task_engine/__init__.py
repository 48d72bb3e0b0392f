"""task_engine."""
