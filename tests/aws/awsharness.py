"""intentgate processes of the AWS suite (with their admin `/metrics`), a redirecting fake
STS endpoint, and raw gRPC helpers.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

import wire
from awsdeploy import IDENTITY, ORDERS, AwsSettings, write_config
from deployment import UPSTREAM_TOKEN, UPSTREAM_TOKEN_ENV
from pki import TestPki
from processes import Gateway, free_port

_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition → (name, labels, value) per series."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SERIES.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


@dataclass(frozen=True)
class StsCounters:
    """The counters the caching test reads, at one moment."""

    outbound: int  # intentgate_plugin_outbound_requests_total{plugin="aws"}, every origin
    misses: int  # intentgate_identity_lookups_total{provider="aws",result="miss"}
    hits: int  # ... result="hit"


class AwsGateway:
    """One `intentgate run` with a TLS gRPC listener and the aws-iam identity plugin."""

    def __init__(self, name: str, folder: Path, settings: AwsSettings, *, upstream_url: str,
                 policies_dir: Path, pki: TestPki) -> None:
        self.admin_port = free_port()
        port = free_port()
        config, audit = write_config(folder / name, settings, upstream_url=upstream_url,
                                     port=port, admin_port=self.admin_port,
                                     policies_dir=policies_dir, tls=pki)
        self.settings = settings
        self._pki = pki
        self.process = Gateway(name, config, self.admin_port, port, audit,
                               env={UPSTREAM_TOKEN_ENV: UPSTREAM_TOKEN})
        self.audit = self.process.audit
        self.target = self.process.target
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self.process.stop()

    @property
    def channel(self) -> grpc.Channel:
        """One shared TLS channel to the listener (trusting only the test CA)."""
        with self._lock:
            if self._channel is None:
                self._channel = wire.tls_channel(self.target, self._pki.ca_pem)
            return self._channel

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            return parse_metrics(response.read().decode())

    def metric(self, name: str, **labels: str) -> int:
        """The sum of every series of `name` whose labels include `labels`."""
        return int(sum(v for n, ls, v in self.metrics()
                       if n == name and all(ls.get(k) == x for k, x in labels.items())))

    def sts_counters(self) -> StsCounters:
        series = self.metrics()

        def total(name: str, **labels: str) -> int:
            return int(sum(v for n, ls, v in series
                           if n == name and all(ls.get(k) == x for k, x in labels.items())))

        return StsCounters(
            outbound=total("intentgate_plugin_outbound_requests_total", plugin=IDENTITY),
            misses=total("intentgate_identity_lookups_total", provider=IDENTITY, result="miss"),
            hits=total("intentgate_identity_lookups_total", provider=IDENTITY, result="hit"),
        )

    def log_tail(self) -> str:
        return self.process.log_tail()


def create_session(gateway: AwsGateway, token: str, database: str = ORDERS) -> wire.RawResult:
    """A raw CreateSession with `authorization: Bearer <token>`."""
    return wire.create_session(gateway.channel, token, database)


class Redirector:
    """A fake STS endpoint on 127.0.0.1 that answers every request with a redirect to `to`
    (moto), and counts what it received."""

    def __init__(self, to: str, status: int) -> None:
        received: list[str] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                received.append(self.headers.get("Host", ""))
                self.send_response(status)
                self.send_header("Location", f"{to}/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="redirector",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
