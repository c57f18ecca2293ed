"""Fixtures: moto as STS (signature checking on), Google's mock Spanner, intentgate with the
aws-iam identity plugin in front of it, AWS credentials and tokens, Python Spanner clients.
Everything binds 127.0.0.1; every server and process is stopped by a finalizer.

The harness modules of tests/spanner (mock Spanner with its recorder, intentgate processes,
the audit reader, the test CA, raw gRPC) are imported from there, unchanged.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spanner"))

from pki import make_pki  # noqa: E402

_RUN_DIR = Path(tempfile.mkdtemp(prefix="intentgate-aws-tests-"))
PKI = make_pki(_RUN_DIR / "pki")
# The Python Spanner client cannot be handed a CA; gRPC reads this once, before any channel.
os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(PKI.ca_cert)
os.environ["SPANNER_DISABLE_BUILTIN_METRICS"] = "true"
os.environ.pop("SPANNER_EMULATOR_HOST", None)
# boto3 must use only the credentials the harness hands it, never the machine's.
for _name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import pytest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from google.api_core.client_options import ClientOptions  # noqa: E402
from google.cloud.spanner_v1 import Client  # noqa: E402
from google.cloud.spanner_v1.database_sessions_manager import DatabaseSessionsManager  # noqa: E402
from google.oauth2.credentials import Credentials as GoogleCredentials  # noqa: E402

import awsdeploy  # noqa: E402
import awstoken  # noqa: E402
from awsharness import AwsGateway, Redirector  # noqa: E402
from mockspanner import MockSpannerServer  # noqa: E402
from processes import build_intentgate, plugin  # noqa: E402
from stsdouble import StsDouble  # noqa: E402

# Database.close() joins the multiplexed-session maintenance thread; make it return at once.
DatabaseSessionsManager._MAINTENANCE_THREAD_POLLING_INTERVAL = datetime.timedelta(milliseconds=50)


def pytest_sessionstart(session):
    """Builds intentgate (a no-op when up to date) and checks the plugins exist, before any
    test runs and outside the per-test timeout."""
    build_intentgate()
    plugin("aws_iam")
    plugin("spanner")


def pytest_unconfigure(config):
    if os.environ.get("INTENTGATE_AWS_KEEP"):
        print(f"\nkept the run folder {_RUN_DIR}")
    else:
        shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def pki():
    return PKI


@pytest.fixture(scope="session")
def mock(request):
    """Google's mock Spanner with a metadata recorder (tests/spanner/mockspanner.py)."""
    server = MockSpannerServer()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(autouse=True)
def fresh_mock(mock):
    mock.reset()
    yield


@pytest.fixture(scope="session")
def sts(request):
    """moto with the account set up (user, access key, TaskRoleA/TaskRoleB), then signature
    checking switched on, and proven on: a forged signature sent straight to moto is refused."""
    double = StsDouble()
    request.addfinalizer(double.stop)
    double.set_up_account()
    double.enable_auth()
    probe = awstoken.mint(double.assume_role("TaskRoleA", "probe"))
    for token, expected in ((probe, 200), (probe.forged(), 403)):
        status, body = double.post_raw(dict(token.headers), token.body.encode())
        assert status == expected, (status, body[:300])
    return double


class AwsCredentials:
    """Temporary credentials per (role, session name), from moto's AssumeRole, made once."""

    def __init__(self, sts: StsDouble) -> None:
        self._sts = sts
        self._cache: dict[tuple[str, str], Credentials] = {}

    def __call__(self, role: str, session: str) -> Credentials:
        key = (role, session)
        if key not in self._cache:
            self._cache[key] = self._sts.assume_role(role, session)
        return self._cache[key]


@pytest.fixture(scope="session")
def aws_credentials(sts):
    return AwsCredentials(sts)


@pytest.fixture(scope="session")
def policies_dir():
    folder = _RUN_DIR / "policies"
    folder.mkdir()
    (folder / "aws.cedar").write_text(awsdeploy.policies())
    return folder


def _gateway(request, name: str, settings: awsdeploy.AwsSettings, mock, policies_dir, pki):
    gateway = AwsGateway(name, _RUN_DIR, settings, upstream_url=mock.url,
                         policies_dir=policies_dir, pki=pki)
    request.addfinalizer(gateway.stop)
    return gateway


@pytest.fixture(scope="session")
def start_gateway(request, mock, policies_dir, pki):
    """Starts another intentgate process (stopped at the end of the session):
    `start_gateway(name, settings)`."""

    def start(name: str, settings: awsdeploy.AwsSettings) -> AwsGateway:
        return _gateway(request, name, settings, mock, policies_dir, pki)

    return start


@pytest.fixture(scope="session")
def gateway(request, sts, mock, policies_dir, pki):
    """intentgate: TLS gRPC listener, aws-iam identity replaying to moto, granted only moto."""
    settings = awsdeploy.AwsSettings(sts_endpoint=sts.url, grants=(sts.url,))
    return _gateway(request, "gateway", settings, mock, policies_dir, pki)


@pytest.fixture(scope="session", params=[302, 307])
def redirecting_gateway(request, sts, mock, policies_dir, pki):
    """intentgate whose sts_endpoint answers with a redirect to moto. The plugin is granted
    moto's origin too, so following the redirect would have reached it."""
    redirector = Redirector(sts.url, request.param)
    request.addfinalizer(redirector.stop)
    settings = awsdeploy.AwsSettings(sts_endpoint=redirector.url,
                                     grants=(redirector.url, sts.url))
    gateway = _gateway(request, f"gateway-redirect-{request.param}", settings, mock,
                       policies_dir, pki)
    return gateway, redirector


@pytest.fixture(scope="session")
def stale_anchor_gateway(request, sts, mock, policies_dir, pki):
    """intentgate whose aws trust anchor was reviewed 31 days ago with max_age_days = 30."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    settings = awsdeploy.AwsSettings(sts_endpoint=sts.url, grants=(sts.url,),
                                     reviewed=today - datetime.timedelta(days=31),
                                     max_age_days=30)
    return _gateway(request, "gateway-stale-anchor", settings, mock, policies_dir, pki)


@pytest.fixture
def open_database(request):
    """Opens a database through a listener with the official Python client and a token as its
    bearer credential (real credentials, so the client uses TLS). Closed at teardown."""
    opened = []

    def open_(target: str, token: str, name: str = "orders", **kwargs):
        client = Client(project="p", credentials=GoogleCredentials(token=token),
                        client_options=ClientOptions(api_endpoint=target),
                        disable_builtin_metrics=True)
        db = client.instance("i").database(name, **kwargs)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        try:
            db.close()
        except Exception:  # noqa: BLE001 - a denied session has nothing to close
            pass

