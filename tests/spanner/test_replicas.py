"""Two intentgate processes in front of one Spanner: a session created through replica 1 can be
used through replica 2 by the principal it belongs to, after replica 2 asked upstream GetSession
once for its creator_role, and by nobody mapped to another role.
"""

from __future__ import annotations

import grpc
import pytest
from google.cloud.spanner_v1.types import spanner

import wire
from checks import allowed, assert_denied_record, assert_upstream_credential
from deployment import ANALYST, ORDERS, READER
from mockspanner import SELECT_1


@pytest.fixture
def channels(gateway, gateway2, pki):
    one = wire.tls_channel(gateway.target, pki.ca_pem)
    two = wire.tls_channel(gateway2.target, pki.ca_pem)
    yield one, two
    one.close()
    two.close()


def get_sessions(mock, name: str) -> list:
    return [r for r in mock.requests_of(spanner.GetSessionRequest) if r.name == name]


def query(channel, session: str, token: str) -> wire.RawResult:
    return wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), token)


def test_owner_uses_a_session_through_another_replica(mock, gateway2, tokens, channels):
    """Replica 2 learns the session's role from upstream once, then serves the owner and
    refuses another principal from its cache."""
    one, two = channels
    session = wire.session_name(wire.create_session(one, tokens(READER.sub), ORDERS))
    mark = gateway2.audit.mark()

    first = query(two, session, tokens(READER.sub))
    assert first.code == grpc.StatusCode.OK, (first.code, first.details)
    assert len(get_sessions(mock, session)) == 1
    again = query(two, session, tokens(READER.sub))
    assert again.code == grpc.StatusCode.OK, (again.code, again.details)
    stolen = query(two, session, tokens(ANALYST.sub))
    assert stolen.code == grpc.StatusCode.PERMISSION_DENIED, (stolen.code, stolen.details)

    assert len(get_sessions(mock, session)) == 1, "replica 2 asked GetSession more than once"
    assert [r.session for r in mock.requests_of(spanner.ExecuteSqlRequest)] == [session, session]
    allowed(gateway2.audit, mark, "ExecuteSql", count=2)
    assert_denied_record(gateway2.audit, mark, stolen.details, "ExecuteSql", tokens.all,
                         header_request_id=stolen.request_id)
    # GetSession went upstream with intentgate's credential, like everything else.
    assert [c for c in mock.recorder.calls if c.method.endswith("/GetSession")]
    assert_upstream_credential(mock, tokens.all)


def test_stranger_first_through_another_replica(mock, gateway2, tokens, channels):
    """The first call replica 2 sees on a foreign session is another principal's: it looks the
    role up and denies, and the owner is then served without a second lookup."""
    one, two = channels
    session = wire.session_name(wire.create_session(one, tokens(READER.sub), ORDERS))
    mark = gateway2.audit.mark()

    stolen = query(two, session, tokens(ANALYST.sub))
    assert stolen.code == grpc.StatusCode.PERMISSION_DENIED, (stolen.code, stolen.details)
    assert_denied_record(gateway2.audit, mark, stolen.details, "ExecuteSql", tokens.all,
                         header_request_id=stolen.request_id)
    owner = query(two, session, tokens(READER.sub))
    assert owner.code == grpc.StatusCode.OK, (owner.code, owner.details)

    assert len(get_sessions(mock, session)) == 1
    assert [r.session for r in mock.requests_of(spanner.ExecuteSqlRequest)] == [session]
    assert_upstream_credential(mock, tokens.all)
