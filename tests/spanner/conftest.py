"""Fixtures: Google's mock Spanner, the OIDC issuer, intentgate listeners in front of the mock,
tokens, and Python Spanner clients. Everything binds 127.0.0.1; every process is stopped by a
finalizer.

The official Python client sends its bearer token only over TLS and cannot be handed a CA, so
the test CA is made here, at import, and named in GRPC_DEFAULT_SSL_ROOTS_FILE_PATH before the
first gRPC channel exists (gRPC reads that variable once per process).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from pki import make_pki

_RUN_DIR = Path(tempfile.mkdtemp(prefix="intentgate-spanner-tests-"))
PKI = make_pki(_RUN_DIR / "pki")
os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(PKI.ca_cert)
# The client's built-in metrics would export to Cloud Monitoring; there is no network here.
os.environ["SPANNER_DISABLE_BUILTIN_METRICS"] = "true"
os.environ.pop("SPANNER_EMULATOR_HOST", None)

import pytest  # noqa: E402
from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud.spanner_v1 import Client  # noqa: E402
from google.cloud.spanner_v1.database_sessions_manager import DatabaseSessionsManager  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402

import deployment  # noqa: E402
from mockspanner import MockSpannerServer  # noqa: E402
from processes import Gateway, Issuer, build_intentgate, free_port  # noqa: E402


# Database.close() joins the multiplexed-session maintenance thread, which polls every
# 10 minutes; poll every 50 ms so closing a database at teardown returns at once.
DatabaseSessionsManager._MAINTENANCE_THREAD_POLLING_INTERVAL = datetime.timedelta(milliseconds=50)


def pytest_sessionstart(session):
    """Builds intentgate before any test runs, outside the per-test timeout."""
    build_intentgate()


def pytest_unconfigure(config):
    """Removes the run's folder (configs, audit files, logs) unless asked to keep it."""
    if os.environ.get("INTENTGATE_SPANNER_KEEP"):
        print(f"\nkept the run folder {_RUN_DIR}")
    else:
        shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def pki():
    """The test CA (trusted by every client here) and the TLS listeners' certificate."""
    return PKI


@pytest.fixture(scope="session")
def mock(request):
    """Google's mock Spanner on 127.0.0.1, with a metadata recorder and real GetSession."""
    server = MockSpannerServer()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(autouse=True)
def fresh_mock(mock):
    """Each test sees only its own upstream requests and metadata."""
    mock.reset()
    yield


@pytest.fixture(scope="session")
def issuer(request):
    """The OIDC issuer peer (node); scripts/ensure-peers installs its packages."""
    peer = Issuer(_RUN_DIR)
    request.addfinalizer(peer.stop)
    return peer


class Tokens:
    """One valid JWT per subject, minted once per run (they live 10 minutes)."""

    def __init__(self, issuer: Issuer) -> None:
        self._issuer = issuer
        self._cache: dict[str, str] = {}

    def __call__(self, sub: str) -> str:
        if sub not in self._cache:
            self._cache[sub] = self._issuer.mint(sub)
        return self._cache[sub]

    @property
    def all(self) -> list[str]:
        return list(self._cache.values())


@pytest.fixture(scope="session")
def tokens(issuer):
    return Tokens(issuer)


@pytest.fixture(scope="session")
def policies_dir(issuer):
    folder = _RUN_DIR / "policies"
    folder.mkdir()
    (folder / "spanner.cedar").write_text(deployment.policies(issuer.url))
    return folder


def _start_gateway(request, name: str, issuer: Issuer, mock: MockSpannerServer,
                   policies_dir: Path, tls, ambient_file: Path | None = None) -> Gateway:
    port, admin_port = free_port(), free_port()
    config, audit = deployment.write_config(
        _RUN_DIR / name, issuer_url=issuer.url, upstream_url=mock.url, port=port,
        admin_port=admin_port, policies_dir=policies_dir, tls=tls, ambient_file=ambient_file,
    )
    gateway = Gateway(name, config, admin_port, port, audit,
                      env={deployment.UPSTREAM_TOKEN_ENV: deployment.UPSTREAM_TOKEN})
    request.addfinalizer(gateway.stop)
    return gateway


@pytest.fixture(scope="session")
def gateway(request, issuer, mock, policies_dir, pki):
    """intentgate's TLS gRPC listener (the gateway shape); replica 1 in the replica test."""
    return _start_gateway(request, "gateway-1", issuer, mock, policies_dir, pki)


@pytest.fixture(scope="session")
def gateway2(request, issuer, mock, policies_dir, pki):
    """A second intentgate process, same config and policies, in front of the same mock."""
    return _start_gateway(request, "gateway-2", issuer, mock, policies_dir, pki)


@pytest.fixture(scope="session")
def sidecar(request, issuer, mock, policies_dir):
    """intentgate's h2c gRPC listener (the sidecar shape: no TLS)."""
    return _start_gateway(request, "sidecar", issuer, mock, policies_dir, None)


@pytest.fixture(scope="session")
def workload_token_file(tokens):
    """The sidecar's own credential, as a kubelet-projected token file would hold it."""
    path = _RUN_DIR / "workload-token"
    path.write_text(tokens(deployment.READER.sub) + "\n")
    return path


@pytest.fixture(scope="session")
def sidecar_ambient(request, issuer, mock, policies_dir, workload_token_file):
    """An h2c sidecar whose callers without a credential act as the workload (READER)."""
    return _start_gateway(request, "sidecar-ambient", issuer, mock, policies_dir, None,
                          ambient_file=workload_token_file)


@pytest.fixture
def open_database(request):
    """Opens a database through a listener with the official Python client.

    `token` given: real credentials (`authorization: Bearer <token>`), which makes the client
    use TLS. `token=None`: AnonymousCredentials, which the client treats as an emulator host
    (plaintext, no credential at all). Databases are closed at teardown, which stops the
    multiplexed-session maintenance thread.
    """
    opened = []

    def open_(target: str, token: str | None, name: str = "orders", **kwargs):
        credentials = Credentials(token=token) if token is not None else AnonymousCredentials()
        client = Client(project="p", credentials=credentials,
                        client_options=ClientOptions(api_endpoint=target),
                        disable_builtin_metrics=True)
        db = client.instance("i").database(name, **kwargs)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        try:
            db.close()
        except Exception:  # noqa: BLE001 - a denied or never-created session has nothing to close
            pass
