"""An IMDSv2-compatible instance metadata endpoint for one local instance.

Session-oriented like the real one: PUT /latest/api/token with a TTL header returns a
token, and every metadata read must present it; IMDSv1 reads (no token) are refused unless
the instance's metadata options make tokens optional.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 (a header name)
TOKEN_HEADER = "x-aws-ec2-metadata-token"  # noqa: S105 (a header name)
MAX_TOKEN_TTL_SECONDS = 21600


class MetadataServer:
    def __init__(
        self,
        *,
        instance_id: str,
        region: str,
        instance_type: str,
        availability_zone: str,
        account_id: str = "123456789012",
        user_data: str = "",
        tokens_required: bool = True,
    ) -> None:
        self.instance_id = instance_id
        self._tokens_required = tokens_required
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._user_data = user_data
        document = {
            "accountId": account_id,
            "availabilityZone": availability_zone,
            "instanceId": instance_id,
            "instanceType": instance_type,
            "region": region,
        }
        self._paths: dict[str, str] = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/instance-type": instance_type,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/placement/availability-zone": availability_zone,
            "/latest/dynamic/instance-identity/document": json.dumps(document),
        }
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"imds-{instance_id}", daemon=True
        )

    @property
    def endpoint(self) -> str:
        """The value for AWS_EC2_METADATA_SERVICE_ENDPOINT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def announce_interruption(self, at_iso: str) -> None:
        """Serve a Spot interruption notice (`spot/instance-action`): the instance is
        terminated at `at_iso`. Until then the path answers 404, as on EC2."""
        notice = json.dumps({"action": "terminate", "time": at_iso})
        with self._lock:
            self._paths["/latest/meta-data/spot/instance-action"] = notice

    def start(self) -> MetadataServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._server.server_close()
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _issue_token(self, ttl_header: str | None) -> tuple[int, str]:
        try:
            ttl = int(ttl_header or "")
        except ValueError:
            return 400, "missing or invalid " + TOKEN_TTL_HEADER
        if not 1 <= ttl <= MAX_TOKEN_TTL_SECONDS:
            return 400, "missing or invalid " + TOKEN_TTL_HEADER
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + ttl
        return 200, token

    def _valid(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and expiry > time.monotonic()

    def _read(self, path: str, token: str | None) -> tuple[int, str]:
        if not self._valid(token) and (self._tokens_required or token is not None):
            return 401, "Unauthorized"
        if path == "/latest/user-data":
            return 200, self._user_data
        if path in ("/latest/meta-data", "/latest/meta-data/"):
            names = sorted(
                {
                    p.removeprefix("/latest/meta-data/").split("/")[0]
                    for p in self._paths
                    if p.startswith("/latest/meta-data/")
                }
            )
            return 200, "\n".join(names)
        with self._lock:
            value = self._paths.get(path.rstrip("/"))
        return (200, value) if value is not None else (404, "Not Found")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # see local_cloud.http_front

            def do_PUT(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.split("?")[0] != "/latest/api/token":
                    self._answer(404, "Not Found")
                    return
                status, body = metadata._issue_token(self.headers.get(TOKEN_TTL_HEADER))
                self._answer(status, body, ttl=self.headers.get(TOKEN_TTL_HEADER) if status == 200 else None)

            def do_GET(self) -> None:
                status, body = metadata._read(self.path.split("?")[0], self.headers.get(TOKEN_HEADER))
                self._answer(status, body)

            def _answer(self, status: int, body: str, ttl: str | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(data)))
                if ttl is not None:
                    self.send_header(TOKEN_TTL_HEADER, ttl)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
