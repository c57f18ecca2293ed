"""`intentgate token aws`: an app or script mints its own token from the ambient AWS chain (here
the ECS container-credentials endpoint, serving moto-issued task-role credentials) and presents
it to the gateway like any other client.
"""

from __future__ import annotations

import json
import os
import subprocess

from awsdeploy import ORDERS, READER_ROLE, principal
from awstoken import AUDIENCE
from checks import allowed
from mission import FakeEcsCredentials, task_environment
from mockspanner import SELECT_1
from processes import intentgate_binary
from stsdouble import ACCOUNT, STS_HOST

TASK_ID = "0c1a2b3c4d5e6f708192a3b4c5d6e7f8"


def mint_with_cli(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Runs the real binary with only the given AWS environment (no keys of the test's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(environment)
    return subprocess.run([str(intentgate_binary()), "token", "aws", *args], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_cli_minted_token_from_the_task_role_is_accepted(gateway, sts, mock, aws_credentials,
                                                           open_database):
    credentials = aws_credentials("TaskRoleA", TASK_ID)
    ecs = FakeEcsCredentials(credentials, f"arn:aws:iam::{ACCOUNT}:role/TaskRoleA")
    try:
        done = mint_with_cli(task_environment(ecs.url), "--audience", AUDIENCE,
                             "--region", "us-east-1")
    finally:
        ecs.stop()
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    parsed = json.loads(token)
    assert parsed["url"].startswith(f"https://{STS_HOST}/"), parsed["url"]
    assert credentials.secret_key not in token, "the token must never carry the secret key"
    assert ecs.requests == ["/creds"], ecs.requests

    mark = gateway.audit.mark()
    db = open_database(gateway.target, token)
    with db.snapshot() as snapshot:
        assert list(snapshot.execute_sql(SELECT_1)) == [[1]]
    created = mock.created_sessions(ORDERS)
    assert [s.creator_role for s in created] == [READER_ROLE]
    record = allowed(gateway.audit, mark, "CreateSession")[0]
    assert record["principal"] == principal("TaskRoleA"), record


def test_no_credentials_is_a_clear_error():
    done = mint_with_cli({"AWS_EC2_METADATA_DISABLED": "true"}, "--audience", AUDIENCE)
    assert done.returncode != 0
    assert "no AWS credentials found" in done.stderr, done.stderr
    assert "ECS container credentials" in done.stderr, done.stderr
    assert done.stdout == ""
