"""Tessera's user-side tools: the local two-party stack launcher and the demo driver.

The command-line interface and the Python SDK will live here as well.
"""
