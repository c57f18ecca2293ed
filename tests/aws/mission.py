"""The mission deployment (issue 4 item 8): an app in emulator mode → its intentgate sidecar
(the task's own AWS identity, from a fake ECS container-credentials endpoint) → an intentgate
gateway (aws-iam identity, the real policies) → Google's mock Spanner, with the gateway's Google
credential obtained by workload identity federation from its own AWS credentials, against a
fake Google STS that checks the AWS subject token and its SigV4 signature.

Everything binds 127.0.0.1 and is stopped by the fixtures' finalizers.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from awsdeploy import IDENTITY, toml_string
from awstoken import ClockedSigV4Auth
from deployment import PROJECT_INSTANCE
from pki import TestPki
from processes import REPO_ROOT, Gateway, intentgate_binary, plugin
from stsdouble import ACCOUNT, REGION

SIDECAR_AUDIENCE = "intentgate-sidecar"  # each sidecar's own aws-iam audience (its ambient token)
GATEWAY_AUDIENCE = "intentgate-gateway.internal"  # what sidecars sign for the gateway
# The workload identity pool provider the gateway federates through (GCP project number 123).
WIF_AUDIENCE = ("//iam.googleapis.com/projects/123456789/locations/global/"
                "workloadIdentityPools/intentgate/providers/aws")
FEDERATED_TOKEN = "ya29.federated-mission-0c1d2e3f"  # what the fake Google STS issues
SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TARGET_RESOURCE_HEADER = "x-goog-cloud-target-resource"


def _expiration(hours: int = 1) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<random> in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class FakeEcsCredentials(_Server):
    """The ECS agent's container-credentials endpoint for one task: `GET /creds` answers the
    task role's temporary credentials (from moto's AssumeRole) in the agent's JSON shape."""

    def __init__(self, credentials: Credentials, role_arn: str) -> None:
        self.credentials = credentials
        self.requests: list[str] = []
        body = json.dumps({
            "AccessKeyId": credentials.access_key,
            "SecretAccessKey": credentials.secret_key,
            "Token": credentials.token,
            "Expiration": _expiration(),
            "RoleArn": role_arn,
        }).encode()
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                requests.append(self.path)
                if self.path != "/creds":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler, "fake-ecs-credentials")
        self.url = f"http://127.0.0.1:{self.port}/creds"


@dataclass
class Exchange:
    """One token exchange the fake Google STS received."""

    form: dict[str, str]
    subject: dict | None
    access_key_id: str = ""
    refused: str = ""  # why it was refused; "" = a token was issued
    signed_headers: list[str] = field(default_factory=list)


def verify_subject_token(subject: dict, audience: str,
                         keys: dict[str, Credentials]) -> tuple[str, list[str]]:
    """Checks a GCP AWS subject token as Google's STS would before replaying it: a signed
    `GetCallerIdentity` POST to an STS host whose signed `x-goog-cloud-target-resource` names
    the provider. Instead of replaying it to AWS, it is re-signed with the credentials of the key
    it names (the harness knows them) and the `Authorization` compared. Returns (access key id,
    signed header names); raises ValueError with the reason."""
    if set(subject) - {"url", "method", "headers", "body"} or not {"url", "method", "headers"} <= set(subject):
        raise ValueError(f"subject token members {sorted(subject)}")
    if subject["method"] != "POST":
        raise ValueError(f"method {subject['method']}")
    url = urlsplit(subject["url"])
    if url.scheme != "https" or not url.hostname or not url.hostname.startswith("sts.") \
            or not url.hostname.endswith(".amazonaws.com"):
        raise ValueError(f"url {subject['url']}")
    body = subject.get("body") or ""
    params = parse_qs(url.query) if url.query else parse_qs(body)
    if params != {"Action": ["GetCallerIdentity"], "Version": ["2011-06-15"]}:
        raise ValueError(f"parameters {params}")
    headers = {}
    for h in subject["headers"]:
        name = h["key"].lower()
        if name in headers:
            raise ValueError(f"header {name} twice")
        headers[name] = h["value"]
    if headers.get(TARGET_RESOURCE_HEADER) != audience:
        raise ValueError(f"{TARGET_RESOURCE_HEADER} = {headers.get(TARGET_RESOURCE_HEADER)!r}")
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
        raise ValueError("no SigV4 authorization")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
    key_id, _day, region, service, _ = scope.split("/")
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    for required in ("host", "x-amz-date", TARGET_RESOURCE_HEADER):
        if required not in signed:
            raise ValueError(f"{required} is not in SignedHeaders {signed}")
    if service != "sts":
        raise ValueError(f"service {service}")
    if headers.get("host", url.hostname) != url.hostname:
        raise ValueError("host header differs from the URL host")
    credentials = keys.get(key_id)
    if credentials is None:
        raise ValueError(f"unknown access key {key_id}")
    if headers.get("x-amz-security-token") != credentials.token:
        raise ValueError("x-amz-security-token is not the key's session token")
    at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - at).total_seconds())
    if skew > 900:
        raise ValueError(f"x-amz-date {skew:.0f} s from now")
    resign = {k: v for k, v in headers.items()
              if k in signed and k not in ("host", "x-amz-date", "x-amz-security-token")}
    request = AWSRequest(method="POST", url=subject["url"], data=body, headers=resign)
    ClockedSigV4Auth(credentials, "sts", region, at).add_auth(request)
    if request.headers["Authorization"] != auth:
        raise ValueError("the signature does not verify (SignatureDoesNotMatch)")
    return key_id, signed


class FakeGoogleSts(_Server):
    """Google's STS token-exchange endpoint (`POST /v1/token`, RFC 8693 form) for AWS subject
    tokens: checks every form field and the subject token (URL-decoded JSON, signature
    re-computed), and answers a federated access token. Records every exchange."""

    def __init__(self, audience: str, keys: dict[str, Credentials]) -> None:
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        exchanges, lock = self.exchanges, self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                exchange = Exchange(form=form, subject=None)
                try:
                    if self.path != "/v1/token":
                        raise ValueError(f"path {self.path}")
                    ctype = self.headers.get("Content-Type", "")
                    if not ctype.startswith("application/x-www-form-urlencoded"):
                        raise ValueError(f"content-type {ctype}")
                    expected = {"grant_type": GRANT_TYPE, "audience": audience,
                                "requested_token_type": ACCESS_TOKEN_TYPE,
                                "subject_token_type": SUBJECT_TOKEN_TYPE}
                    for name, value in expected.items():
                        if form.get(name) != value:
                            raise ValueError(f"{name} = {form.get(name)!r}")
                    if not form.get("scope"):
                        raise ValueError("no scope")
                    # The JSON is URL-encoded once more inside the form value (Go and Rust: `+` for space).
                    subject_text = form.get("subject_token", "")
                    if subject_text.startswith("%7B"):
                        subject_text = unquote_plus(subject_text)
                    exchange.subject = json.loads(subject_text)
                    exchange.access_key_id, exchange.signed_headers = verify_subject_token(
                        exchange.subject, audience, keys)
                except (ValueError, KeyError, json.JSONDecodeError) as e:
                    exchange.refused = str(e) or type(e).__name__
                with lock:
                    exchanges.append(exchange)
                if exchange.refused:
                    answer = {"error": "invalid_grant", "error_description": exchange.refused}
                    status = 400
                else:
                    answer = {"access_token": FEDERATED_TOKEN,
                              "issued_token_type": ACCESS_TOKEN_TYPE,
                              "token_type": "Bearer", "expires_in": 3600}
                    status = 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        super().__init__(Handler, "fake-google-sts")
        self.token_url = f"http://127.0.0.1:{self.port}/v1/token"

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)


# --- configs -------------------------------------------------------------------------------


def _identity_block(audience: str, sts_url: str) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return f"""\
[[identity]]
name = "{IDENTITY}"
plugin = {toml_string(str(plugin("aws_iam")))}
outbound = [{{ origin = {toml_string(sts_url)}, private = true }}]
config = {{ audience = "{audience}", sts_endpoint = {toml_string(sts_url)}, trusted_accounts = ["{ACCOUNT}"] }}

[[trust_anchor]]
id = "{ACCOUNT}"
provider = "{IDENTITY}"
reviewed = "{today}"

[[connector]]
name = "spanner"
plugin = {toml_string(str(plugin("spanner")))}
config = {{ instances = [{toml_string(PROJECT_INSTANCE)}] }}
"""


def write_sidecar_config(folder: Path, *, sts_url: str, gateway_port: int, ca: Path,
                         port: int, admin_port: int, policies_dir: Path) -> tuple[Path, Path]:
    """A task's sidecar: h2c on loopback, the task's own token for callers that send none,
    and a fresh task token for the gateway (TLS, trusting the test CA)."""
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.jsonl"
    text = f"""\
[audit]
output = {toml_string(str(audit))}

[admin]
bind = "127.0.0.1:{admin_port}"

[runtime]
worker_threads = 1

{_identity_block(SIDECAR_AUDIENCE, sts_url)}
[policy]
policies = [{toml_string(str(policies_dir))}]

[[listener]]
name = "spanner"
protocol = "grpc"
bind = "127.0.0.1:{port}"
identity = "{IDENTITY}"
connector = "spanner"
credential = {{ header = "authorization", scheme = "Bearer", ambient_aws = {{ audience = "{SIDECAR_AUDIENCE}" }} }}
upstream = "https://127.0.0.1:{gateway_port}"
upstream_ca = {toml_string(str(ca))}
upstream_credential = {{ aws_token = {{ audience = "{GATEWAY_AUDIENCE}" }} }}
"""
    config = folder / "intentgate.toml"
    config.write_text(text)
    return config, audit


def google_from_aws_line(token_url: str) -> str:
    return (f'upstream_credential = {{ google_from_aws = {{ audience = {toml_string(WIF_AUDIENCE)}, '
            f'token_url = {toml_string(token_url)} }} }}')


def write_gateway_config(folder: Path, *, sts_url: str, upstream_url: str, credential_line: str,
                         port: int, admin_port: int, policies_dir: Path,
                         tls: TestPki) -> tuple[Path, Path]:
    """The gateway: TLS gRPC listener, aws-iam identity with the gateway's audience."""
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.jsonl"
    text = f"""\
[audit]
output = {toml_string(str(audit))}

[admin]
bind = "127.0.0.1:{admin_port}"

{_identity_block(GATEWAY_AUDIENCE, sts_url)}
[policy]
policies = [{toml_string(str(policies_dir))}]

[[listener]]
name = "spanner"
protocol = "grpc"
bind = "127.0.0.1:{port}"
identity = "{IDENTITY}"
connector = "spanner"
credential = {{ header = "authorization", scheme = "Bearer" }}
upstream = {toml_string(upstream_url)}
{credential_line}
tls = {{ cert = {toml_string(str(tls.server_cert))}, key = {toml_string(str(tls.server_key))} }}
"""
    config = folder / "intentgate.toml"
    config.write_text(text)
    return config, audit


def check_config(config: Path) -> tuple[bool, str]:
    """`intentgate check --config`: (ok, output)."""
    done = subprocess.run([str(intentgate_binary()), "check", "--config", str(config)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    return done.returncode == 0, done.stdout + done.stderr


def task_environment(credentials_url: str) -> dict[str, str]:
    """What the ECS agent puts in a container's environment (no AWS keys)."""
    return {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGION,
    }


def start(name: str, config: Path, audit: Path, port: int, admin_port: int,
          env: dict[str, str]) -> Gateway:
    return Gateway(name, config, admin_port, port, audit, env=env)

