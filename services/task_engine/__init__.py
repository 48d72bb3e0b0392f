"""The task engine: a worker that runs each step of a job as its own process (see worker.py)."""
