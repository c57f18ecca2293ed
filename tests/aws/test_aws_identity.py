"""Valid AWS tokens through the running proxy: a TaskRoleA task queries Spanner with the official
Python client; TaskRoleB and a debug session of TaskRoleA are denied by policy.
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.spanner_v1.types import spanner

import awstoken
from awsdeploy import FORBID_ID, ORDERS, PERMIT_ID, READER_ROLE, principal
from awsharness import create_session
from checks import allowed, assert_upstream_credential, method, record_of_error
from mockspanner import SELECT_1
from stsdouble import ACCOUNT, STS_HOST

# An ECS task id: the session name the ECS agent uses when it assumes a task role.
TASK_ID = "8f03e41243824aea923aca126495f665"


def assert_clean(record: dict, token: awstoken.Token) -> None:
    """No part of the credential (JSON, signature, session token) is in an audit record."""
    text = json.dumps(record)
    for secret in awstoken.sensitive_parts(token):
        assert secret not in text, f"an audit record contains part of the AWS token: {record}"


def test_task_role_a_queries_through_the_python_client(gateway, sts, mock, aws_credentials,
                                                       open_database):
    """SELECT 1 through the official client with the JSON token as its bearer credential.

    intentgate replayed the signed request to moto exactly once (with the signed Host), served
    the client's later calls from its identity cache, made the principal the canonical role ARN
    (path dropped) in the account's trust anchor, and forced the session's creator_role."""
    token = awstoken.mint(aws_credentials("TaskRoleA", TASK_ID))
    sts_mark, audit_mark = sts.mark(), gateway.audit.mark()

    db = open_database(gateway.target, token.json())
    with db.snapshot() as snapshot:
        rows = list(snapshot.execute_sql(SELECT_1))
    assert rows == [[1]]

    created = mock.created_sessions(ORDERS)
    assert [s.creator_role for s in created] == [READER_ROLE]
    assert mock.requests_of(spanner.ExecuteSqlRequest), "the query never reached upstream"
    assert_upstream_credential(mock, awstoken.sensitive_parts(token))

    create = allowed(gateway.audit, audit_mark, "CreateSession")[0]
    query = allowed(gateway.audit, audit_mark, "ExecuteStreamingSql")[0]
    for record in (create, query):
        assert record["principal"] == principal("TaskRoleA"), record
        assert record["identity_provider"] == "aws", record
        assert record["trust_anchor"] == ACCOUNT, record
        assert record["policies"] == [PERMIT_ID], record
        assert record["resource"] == f'Spanner::Database::"{ORDERS}"', record
        assert_clean(record, token)
    assert create["binding"] == f"database_role={READER_ROLE}", create
    assert create["identity_cached"] is False and query["identity_cached"] is True

    # STS saw one replay of exactly this signed request, addressed to the signed host.
    replays = sts.caller_identity_calls(sts_mark)
    assert [(c.action, c.status) for c in replays] == [("GetCallerIdentity", 200)], replays
    assert replays[0].access_key_id == token.access_key_id
    assert all(c.host == STS_HOST for c in sts.since(sts_mark))


def test_task_role_b_is_permission_denied(gateway, sts, mock, aws_credentials):
    """A valid TaskRoleB token identifies the caller (STS answered), but no permit names the
    role: PERMISSION_DENIED, a deny record naming the principal, nothing upstream."""
    token = awstoken.mint(aws_credentials("TaskRoleB", TASK_ID))
    sts_mark, audit_mark = sts.mark(), gateway.audit.mark()

    result = create_session(gateway, token.json())

    assert result.code == grpc.StatusCode.PERMISSION_DENIED, (result.code, result.details)
    record = record_of_error(gateway.audit, audit_mark, result.details)
    assert record["decision"] == "deny", record
    assert record["method"] == method("CreateSession"), record
    assert record["principal"] == principal("TaskRoleB"), record
    assert record["trust_anchor"] == ACCOUNT, record
    assert record["policies"] == [], record
    assert record["reason"], record
    assert_clean(record, token)
    assert mock.requests == [] and mock.recorder.calls == [], "a denied call reached Spanner"
    assert len(sts.caller_identity_calls(sts_mark)) == 1


def test_the_session_name_reaches_policy(gateway, sts, mock, aws_credentials, open_database):
    """TaskRoleA assumed under a `debug-*` session name: the forbid on `principal.session_name`
    applies, so the session attribute (the ECS task id for real tasks) is visible to Cedar."""
    token = awstoken.mint(aws_credentials("TaskRoleA", "debug-shell"))
    audit_mark = gateway.audit.mark()

    db = open_database(gateway.target, token.json())
    with pytest.raises(exceptions.PermissionDenied) as denied:
        with db.snapshot() as snapshot:
            list(snapshot.execute_sql(SELECT_1))

    record = record_of_error(gateway.audit, audit_mark, str(denied.value))
    assert record["decision"] == "deny", record
    assert record["principal"] == principal("TaskRoleA"), record
    assert record["policies"] == [FORBID_ID], record
    assert FORBID_ID in record["reason"], record
    assert_clean(record, token)
    assert mock.requests == [], "a denied call reached Spanner"
