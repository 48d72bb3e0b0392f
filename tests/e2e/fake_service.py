"""A stand-in for ``python -m <service>`` used by the launcher's tests (run as the "python").

``fake_service.py -m <service> --env-file FILE`` answers 200 on every path at the service's port
from the environment (the bridge also at its internal port, where its health check is);
``-m federation_bridge keygen --out DIR`` writes two key files. A service named in ``FAKE_DIE``
prints ``boom`` and exits with status 3 instead.
"""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

PORT_VARS = {
    "flow_server": "FLOW_SERVER_PORT",
    "task_engine": "TASK_ENGINE_PORT",
    "federation_bridge": "EXPOSE_MQ_HTTP_PORT",
    "dashboard": "DASHBOARD_PORT",
}


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str]) -> int:
    service = argv[argv.index("-m") + 1]
    if "keygen" in argv:
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "private.pem").write_text("fake private\n")
        (out / "public.pem").write_text("fake public\n")
        return 0
    if os.environ.get("FAKE_DIE") == service:
        sys.stderr.write("boom\n")
        return 3
    if service == "federation_bridge":
        internal = HTTPServer(("127.0.0.1", int(os.environ["BRIDGE_INTERNAL_PORT"])), _Ok)
        threading.Thread(target=internal.serve_forever, daemon=True).start()
    HTTPServer(("127.0.0.1", int(os.environ[PORT_VARS[service]])), _Ok).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
