"""The official Python client through intentgate's TLS gRPC listener (the gateway shape) to
Google's mock Spanner: authentication, Cedar decisions, forced database roles, session binding,
strict request parsing, credential swapping and audit.
"""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.spanner_v1.types import spanner

import wire
from checks import (
    allowed,
    assert_denied_record,
    assert_record_clean,
    assert_upstream_credential,
)
from deployment import ANALYST, ORDERS, READER, SECRET, WRITER, database
from mockspanner import SELECT_1, UPDATE_ORDERS


def select_one(db) -> list:
    with db.snapshot() as snapshot:
        return list(snapshot.execute_sql(SELECT_1))


def update_orders(transaction) -> int:
    return transaction.execute_update(UPDATE_ORDERS)


@pytest.fixture
def channel(gateway, pki):
    ch = wire.tls_channel(gateway.target, pki.ca_pem)
    yield ch
    ch.close()


def test_query_in_snapshot(mock, gateway, tokens, open_database):
    """SELECT 1 works; the session was created with the mapped role; upstream only ever saw
    intentgate's credential; each attempt has an allow record with its own request ID."""
    mark = gateway.audit.mark()
    jwt = tokens(READER.sub)

    assert select_one(open_database(gateway.target, jwt)) == [[1]]

    created = mock.created_sessions(ORDERS)
    assert [s.creator_role for s in created] == [READER.role]
    assert created[0].multiplexed
    assert mock.requests_of(spanner.ExecuteSqlRequest), "the query never reached upstream"
    assert_upstream_credential(mock, tokens.all)

    create = allowed(gateway.audit, mark, "CreateSession")[0]
    query = allowed(gateway.audit, mark, "ExecuteStreamingSql")[0]
    assert create["binding"] == f"database_role={READER.role}", create
    for record in (create, query):
        assert_record_clean(record, tokens.all)
        assert READER.sub in record["principal"], record
        assert ORDERS in record["resource"], record
    assert create["request_id"] != query["request_id"]
    assert query["action"].endswith('"read"'), query


def test_read_write_transaction(mock, gateway, tokens, open_database):
    """A writer's DML plus Commit in run_in_transaction; both are authorized as write."""
    mark = gateway.audit.mark()
    db = open_database(gateway.target, tokens(WRITER.sub))

    assert db.run_in_transaction(update_orders) == 1

    assert [s.creator_role for s in mock.created_sessions(ORDERS)] == [WRITER.role]
    dml = [r for r in mock.requests_of(spanner.ExecuteSqlRequest) if r.sql == UPDATE_ORDERS]
    assert len(dml) == 1 and "read_write" in dml[0].transaction.begin
    assert len(mock.requests_of(spanner.CommitRequest)) == 1
    assert_upstream_credential(mock, tokens.all)
    commit = allowed(gateway.audit, mark, "Commit")[0]
    assert commit["action"].endswith('"write"'), commit
    assert_record_clean(commit, tokens.all)


def test_aborted_commit_is_retried_by_the_client(mock, gateway, tokens, open_database):
    """ABORTED with RetryInfo passes through intentgate untouched, so the client's transaction
    runner re-runs the function; intentgate itself must not retry it."""
    mark = gateway.audit.mark()
    db = open_database(gateway.target, tokens(WRITER.sub))
    mock.inject_aborted("Commit")
    attempts = []

    def work(transaction):
        attempts.append(1)
        return update_orders(transaction)

    assert db.run_in_transaction(work) == 1

    assert len(attempts) == 2
    assert len(mock.requests_of(spanner.CommitRequest)) == 2
    allowed(gateway.audit, mark, "Commit", count=2)
    assert_upstream_credential(mock, tokens.all)


def test_database_without_permit_is_denied(mock, gateway, tokens, open_database):
    """No permit names `secret`: PERMISSION_DENIED, and nothing about it reaches upstream."""
    mark = gateway.audit.mark()
    db = open_database(gateway.target, tokens(READER.sub), name="secret")

    with pytest.raises(exceptions.PermissionDenied) as denied:
        select_one(db)

    assert mock.requests_for_database(SECRET) == []
    assert not [c for c in mock.recorder.calls if "secret" in str(c.metadata)]
    record = assert_denied_record(gateway.audit, mark, str(denied.value), "CreateSession",
                                  tokens.all)
    assert READER.sub in record["principal"]


def test_reader_cannot_write(mock, gateway, tokens, open_database):
    """A read-only mapping may connect and query, but neither DML nor a mutation Commit."""
    mark = gateway.audit.mark()
    db = open_database(gateway.target, tokens(READER.sub))

    with pytest.raises(exceptions.PermissionDenied) as dml_denied:
        db.run_in_transaction(update_orders)
    with pytest.raises(exceptions.PermissionDenied) as commit_denied:
        with db.batch() as batch:
            batch.insert("orders", columns=("id",), values=[(2,)])

    assert not [r for r in mock.requests_of(spanner.ExecuteSqlRequest) if r.sql == UPDATE_ORDERS]
    assert mock.requests_of(spanner.CommitRequest) == []
    dml = assert_denied_record(gateway.audit, mark, str(dml_denied.value), "ExecuteSql",
                               tokens.all)
    assert dml["action"].endswith('"write"'), dml
    commit = assert_denied_record(gateway.audit, mark, str(commit_denied.value), "Commit",
                                  tokens.all)
    assert commit["action"].endswith('"write"'), commit


def test_client_cannot_choose_another_database_role(mock, gateway, tokens, open_database):
    """The policy's @database_role is the only role a principal gets: asking for another is
    denied before upstream; asking for the mapped one, or none, yields the mapped one."""
    jwt = tokens(READER.sub)
    mark = gateway.audit.mark()

    with pytest.raises((exceptions.PermissionDenied, exceptions.InvalidArgument)) as denied:
        select_one(open_database(gateway.target, jwt, database_role="other"))
    assert mock.created_sessions() == []
    record = assert_denied_record(gateway.audit, mark, str(denied.value), "CreateSession",
                                  tokens.all)
    assert "other" in record["reason"], record

    assert select_one(open_database(gateway.target, jwt, database_role=READER.role)) == [[1]]
    assert select_one(open_database(gateway.target, jwt)) == [[1]]
    assert [s.creator_role for s in mock.created_sessions(ORDERS)] == [READER.role, READER.role]
    assert_upstream_credential(mock, tokens.all)


def test_session_is_bound_to_its_creators_role(mock, gateway, tokens, open_database, channel):
    """A session name is a bearer capability: another principal (mapped to another role) may
    not use it, even with a valid token and a permit on the same database."""
    known = set(mock.servicer.sessions)
    assert select_one(open_database(gateway.target, tokens(READER.sub))) == [[1]]
    readers_session = (set(mock.servicer.sessions) - known).pop()
    assert mock.servicer.sessions[readers_session].creator_role == READER.role
    assert_upstream_credential(mock, tokens.all)
    mock.reset()
    mark = gateway.audit.mark()

    stolen = wire.unary(channel, "ExecuteSql", wire.execute_sql(readers_session, SELECT_1),
                        tokens(ANALYST.sub))

    assert stolen.code == grpc.StatusCode.PERMISSION_DENIED, (stolen.code, stolen.details)
    assert mock.requests_of(spanner.ExecuteSqlRequest) == []
    record = assert_denied_record(gateway.audit, mark, stolen.details, "ExecuteSql", tokens.all,
                                  header_request_id=stolen.request_id)
    assert ANALYST.sub in record["principal"]

    own = wire.session_name(wire.create_session(channel, tokens(ANALYST.sub), ORDERS))
    assert mock.servicer.sessions[own].creator_role == ANALYST.role
    ok = wire.unary(channel, "ExecuteSql", wire.execute_sql(own, SELECT_1), tokens(ANALYST.sub))
    assert ok.code == grpc.StatusCode.OK, (ok.code, ok.details)
    assert ok.request_id, "an allowed response carries x-request-id"
    assert gateway.audit.by_request_id(ok.request_id)["decision"] == "allow"
    assert [r.session for r in mock.requests_of(spanner.ExecuteSqlRequest)] == [own]
    assert_upstream_credential(mock, tokens.all)


def test_repeated_field_1_is_malformed(mock, gateway, tokens, channel):
    """A message naming two sessions (field 1 twice) is refused: upstream would read the last
    one, so authorizing either would be a bypass. Same for equal values."""
    jwt = tokens(ANALYST.sub)
    own = wire.session_name(wire.create_session(channel, jwt, ORDERS))
    victim = wire.session_name(wire.create_session(channel, tokens(READER.sub), ORDERS))
    mock.reset()
    mark = gateway.audit.mark()

    for second in (victim, own):
        raw = wire.execute_sql_repeating_session(own, second, SELECT_1)
        result = wire.unary(channel, "ExecuteSql", raw, jwt)
        assert result.code == grpc.StatusCode.INVALID_ARGUMENT, (result.code, result.details)
        assert_denied_record(gateway.audit, mark, result.details, "ExecuteSql", tokens.all,
                             header_request_id=result.request_id)

    assert mock.requests == []
    assert mock.recorder.calls == []


def test_database_outside_the_configured_instances(mock, gateway, tokens, channel):
    """The connector fronts only projects/p/instances/i: another instance is malformed."""
    mark = gateway.audit.mark()
    other = "projects/p/instances/other/databases/orders"

    result = wire.create_session(channel, tokens(READER.sub), other)

    assert result.code == grpc.StatusCode.INVALID_ARGUMENT, (result.code, result.details)
    assert mock.requests == []
    assert_denied_record(gateway.audit, mark, result.details, "CreateSession", tokens.all,
                         header_request_id=result.request_id)


def test_bad_tokens_are_unauthenticated(mock, gateway, tokens, issuer, channel):
    """No credential, a tampered token and a token for another audience never reach upstream."""
    mark = gateway.audit.mark()
    request = spanner.CreateSessionRequest.serialize(spanner.CreateSessionRequest(database=ORDERS))
    bad = [None, issuer.mint(READER.sub, kind="tampered"),
           issuer.mint(READER.sub, kind="wrong-aud")]

    for token in bad:
        result = wire.unary(channel, "CreateSession", request, token)
        assert result.code == grpc.StatusCode.UNAUTHENTICATED, (result.code, result.details)
        assert_denied_record(gateway.audit, mark, result.details, "CreateSession",
                             tokens.all + [t for t in bad if t],
                             header_request_id=result.request_id)

    assert mock.requests == []


def test_malformed_database_names_are_not_forwarded(mock, gateway, tokens, channel):
    """Field 1 must be exactly a database name: a session-shaped or dotted name is malformed."""
    for name in (ORDERS + "/sessions/1", database("..")):
        result = wire.create_session(channel, tokens(READER.sub), name)
        assert result.code == grpc.StatusCode.INVALID_ARGUMENT, (name, result.code, result.details)
    assert mock.requests == []
