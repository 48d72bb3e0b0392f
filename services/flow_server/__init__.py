"""flow_server: a party's REST API, job DSL, cross-party job protocol and DAG scheduler.

Run it with ``python -m flow_server --env-file deploy/env/party-10000.env``.
"""

from flow_server.app import create_app

__all__ = ["create_app"]
