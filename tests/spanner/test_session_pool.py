"""The same main flows with multiplexed sessions switched off: the client keeps a FixedSizePool
filled by BatchCreateSessions, whose session_template must get the forced role, and every
session of the batch must be bound to it.
"""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.spanner_v1.pool import FixedSizePool
from google.cloud.spanner_v1.types import spanner

import wire
from checks import allowed, assert_denied_record, assert_upstream_credential
from deployment import ANALYST, ORDERS, READER, WRITER
from mockspanner import SELECT_1, UPDATE_ORDERS

POOL_SIZE = 3


@pytest.fixture(autouse=True)
def no_multiplexed_sessions(monkeypatch):
    """google-cloud-spanner 3.71 reads these on every session checkout."""
    for suffix in ("", "_PARTITIONED_OPS", "_FOR_RW"):
        monkeypatch.setenv(f"GOOGLE_CLOUD_SPANNER_MULTIPLEXED_SESSIONS{suffix}", "false")


def pooled(open_database, gateway, token, **kwargs):
    return open_database(gateway.target, token, pool=FixedSizePool(size=POOL_SIZE), **kwargs)


def batch_creates(mock) -> list:
    return mock.requests_of(spanner.BatchCreateSessionsRequest)


def test_pool_query_and_transaction_get_the_forced_role(mock, gateway, tokens, open_database):
    """Reader queries and writer commits through pooled sessions; each batch carries the
    principal's mapped role although the client asked for none."""
    mark = gateway.audit.mark()
    reader = pooled(open_database, gateway, tokens(READER.sub))
    with reader.snapshot() as snapshot:
        assert list(snapshot.execute_sql(SELECT_1)) == [[1]]
    writer = pooled(open_database, gateway, tokens(WRITER.sub))
    assert writer.run_in_transaction(lambda tx: tx.execute_update(UPDATE_ORDERS)) == 1

    batches = batch_creates(mock)
    assert [(b.session_count, b.session_template.creator_role) for b in batches] == [
        (POOL_SIZE, READER.role), (POOL_SIZE, WRITER.role)]
    assert mock.requests_of(spanner.CreateSessionRequest) == []
    assert not [s for s in mock.created_sessions() if s.multiplexed]
    assert len(mock.requests_of(spanner.CommitRequest)) == 1
    records = allowed(gateway.audit, mark, "BatchCreateSessions", count=2)
    assert sorted(r["binding"] for r in records) == sorted(
        f"database_role={m.role}" for m in (READER, WRITER))
    assert_upstream_credential(mock, tokens.all)


def test_pool_with_another_role_is_denied(mock, gateway, tokens, open_database):
    """A pool asking for a role its principal is not mapped to never gets a session."""
    mark = gateway.audit.mark()
    with pytest.raises((exceptions.PermissionDenied, exceptions.InvalidArgument)) as denied:
        db = pooled(open_database, gateway, tokens(READER.sub), database_role="other")
        with db.snapshot() as snapshot:
            list(snapshot.execute_sql(SELECT_1))
    assert batch_creates(mock) == []
    assert_denied_record(gateway.audit, mark, str(denied.value), "BatchCreateSessions",
                         tokens.all)


def test_every_pooled_session_is_bound(mock, gateway, tokens, open_database, pki):
    """All sessions of a BatchCreateSessions answer are bound to the reader's role: another
    principal is denied on each, the reader is allowed on each."""
    known = set(mock.servicer.sessions)
    pooled(open_database, gateway, tokens(READER.sub))
    sessions = sorted(set(mock.servicer.sessions) - known)
    assert len(sessions) == POOL_SIZE
    mark = gateway.audit.mark()

    channel = wire.tls_channel(gateway.target, pki.ca_pem)
    try:
        for session in sessions:
            request = wire.execute_sql(session, SELECT_1)
            stolen = wire.unary(channel, "ExecuteSql", request, tokens(ANALYST.sub))
            assert stolen.code == grpc.StatusCode.PERMISSION_DENIED, (stolen.code, stolen.details)
            assert_denied_record(gateway.audit, mark, stolen.details, "ExecuteSql", tokens.all,
                                  header_request_id=stolen.request_id)
            own = wire.unary(channel, "ExecuteSql", request, tokens(READER.sub))
            assert own.code == grpc.StatusCode.OK, (own.code, own.details)
    finally:
        channel.close()
    assert [r.session for r in mock.requests_of(spanner.ExecuteSqlRequest)] == sessions
    assert mock.requests_of(spanner.GetSessionRequest) == [], "replica 1 knew its sessions"
    assert all(r.database == ORDERS for r in batch_creates(mock))
