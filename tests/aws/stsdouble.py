"""moto's STS and IAM server as the STS double, in this process, on 127.0.0.1, with a recorder
of every request it receives.

moto is run the way its `ThreadedMotoServer` runs it (its WSGI dispatcher on a threaded
werkzeug server), with one addition: a WSGI wrapper that records each request before moto sees
it (Host header, path, Action, access key id, status). That recorder is how the tests prove
that a refused token never reached STS, and count the STS calls the identity cache saves.

moto checks SigV4 signatures only after `INITIAL_NO_AUTH_ACTION_COUNT` unauthenticated
actions. Setup (IAM user, access key, roles) runs unauthenticated; then `enable_auth()` sets the
count to 0 through moto's own `/moto-api/reset-auth`, and from then on every call, including
each GetCallerIdentity intentgate replays, must carry a valid signature by a key moto issued.
moto does not check `X-Amz-Date` freshness and always answers XML (research note §5.1).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qs

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
STS_HOST = f"sts.{REGION}.amazonaws.com"
USER = "ecs-agent"  # stands in for the ECS agent, which assumes task roles for tasks
ROLE_PATH = "/ecs-tasks/"  # STS drops the path from assumed-role ARNs; policies omit it
# IntentgateGateway: the gateway task's own role (test_mission.py federates it to Google).
ROLES = ("TaskRoleA", "TaskRoleB", "IntentgateGateway")


def role_arn(role: str) -> str:
    """The role's ARN as IAM names it (with its path)."""
    return f"arn:aws:iam::{ACCOUNT}:role{ROLE_PATH}{role}"


def canonical_role_arn(role: str) -> str:
    """The principal id intentgate makes of a role session: the role ARN without the path."""
    return f"arn:aws:iam::{ACCOUNT}:role/{role}"


@dataclass(frozen=True)
class StsCall:
    """One request moto received."""

    host: str
    path: str
    action: str
    access_key_id: str
    status: int


def _access_key_id(authorization: str) -> str:
    """The key id of a SigV4 `Authorization` header (never the signature)."""
    marker = "Credential="
    start = authorization.find(marker)
    if start < 0:
        return ""
    return authorization[start + len(marker):].split("/", 1)[0]


class _Recorder:
    """WSGI wrapper: records every request (after moto answered, with its status)."""

    def __init__(self, app) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._calls: list[StsCall] = []

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = parse_qs(body.decode("utf-8", "replace")) if body else {}
        if not params and environ.get("QUERY_STRING"):
            params = parse_qs(environ["QUERY_STRING"])
        status_seen: list[int] = []

        def recording_start_response(status, headers, exc_info=None):
            status_seen.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        try:
            return self._app(environ, recording_start_response)
        finally:
            with self._lock:
                self._calls.append(StsCall(
                    host=environ.get("HTTP_HOST", ""),
                    path=environ.get("PATH_INFO", ""),
                    action=",".join(params.get("Action", [])),
                    access_key_id=_access_key_id(environ.get("HTTP_AUTHORIZATION", "")),
                    status=status_seen[0] if status_seen else 0,
                ))

    @property
    def calls(self) -> list[StsCall]:
        with self._lock:
            return list(self._calls)


class StsDouble:
    """moto on 127.0.0.1:<random port>; `url` is what intentgate's `sts_endpoint` names."""

    def __init__(self) -> None:
        # werkzeug logs one line per request on stderr; pytest would show thousands of them.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._recorder = _Recorder(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self._recorder, threaded=True, request_handler=MotoRequestHandler,
        )
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto",
                                        daemon=True)
        self._thread.start()
        self._user_credentials: Credentials | None = None
        self.user_arn = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- what moto saw ----------------------------------------------------------------------

    @property
    def calls(self) -> list[StsCall]:
        return self._recorder.calls

    def mark(self) -> int:
        return len(self._recorder.calls)

    def since(self, mark: int) -> list[StsCall]:
        return self._recorder.calls[mark:]

    def caller_identity_calls(self, mark: int = 0) -> list[StsCall]:
        """GetCallerIdentity requests after `mark` that came addressed to the STS host, i.e.
        the replays intentgate sent (our own setup calls carry Host 127.0.0.1:<port>)."""
        return [c for c in self.since(mark) if c.host == STS_HOST]

    # --- setup ------------------------------------------------------------------------------

    def _client(self, service: str, credentials: Credentials | None = None):
        creds = credentials or Credentials("AKIDSETUPUNAUTHENTICATED", "setup-secret")
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.token,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

    def set_up_account(self) -> None:
        """The IAM user the ECS agent stands for (with an access key and permission to assume
        the task roles) and the roles TaskRoleA/TaskRoleB, whose trust policy names the user.

        moto quirk (research note §5.1): with signature checking on, AssumeRole is allowed
        only if the trust policy names the caller's exact user ARN (`...:root` is refused and a
        Service-only principal fails with HTTP 500), so the trust policy is not the
        `ecs-tasks.amazonaws.com` one a real task role would have.
        """
        iam = self._client("iam")
        self.user_arn = iam.create_user(UserName=USER)["User"]["Arn"]
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        self._user_credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        iam.put_user_policy(
            UserName=USER, PolicyName="assume-task-roles",
            PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Resource": [role_arn(r) for r in ROLES]}],
            }),
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": self.user_arn},
                           "Action": "sts:AssumeRole"}],
        }
        for role in ROLES:
            iam.create_role(RoleName=role, Path=ROLE_PATH,
                            AssumeRolePolicyDocument=json.dumps(trust))

    def enable_auth(self) -> None:
        """From now on moto checks every request's signature (INITIAL_NO_AUTH_ACTION_COUNT=0)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer.get("status") == "ok", answer

    def assume_role(self, role: str, session_name: str) -> Credentials:
        """Temporary credentials of `role` for the session `session_name` (an ECS task id), as
        the ECS agent would hand them to the task; the AssumeRole call is signed by the user."""
        assert self._user_credentials is not None, "set_up_account() first"
        sts = self._client("sts", self._user_credentials)
        answer = sts.assume_role(RoleArn=role_arn(role), RoleSessionName=session_name)
        c = answer["Credentials"]
        assert answer["AssumedRoleUser"]["Arn"] == (
            f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session_name}"
        ), answer["AssumedRoleUser"]
        return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    def post_raw(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Sends a request to moto directly (Host header as given); for the sanity check that
        signature checking is really on."""
        request = urllib.request.Request(f"{self.url}/", data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
