"""intentgate's h2c gRPC listener (the sidecar shape). The official clients in emulator mode
speak plaintext and send no credential at all, so they are refused; a caller that does send a
bearer token over h2c is served.
"""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions

import wire
from checks import allowed, assert_denied_record, assert_upstream_credential
from deployment import ORDERS, READER
from mockspanner import SELECT_1


def test_emulator_mode_client_is_unauthenticated(mock, sidecar, tokens, open_database):
    """AnonymousCredentials + api_endpoint = emulator mode: no authorization header."""
    mark = sidecar.audit.mark()
    db = open_database(sidecar.target, None)

    with pytest.raises(exceptions.Unauthenticated) as denied:
        with db.snapshot() as snapshot:
            list(snapshot.execute_sql(SELECT_1))

    assert mock.requests == []
    record = assert_denied_record(sidecar.audit, mark, str(denied.value), "CreateSession",
                                  tokens.all)
    assert not record.get("principal"), record


def test_bearer_token_over_h2c_is_served(mock, sidecar, tokens):
    """The sidecar shape authenticates the same bearer token as the TLS listener."""
    mark = sidecar.audit.mark()
    channel = grpc.insecure_channel(sidecar.target)
    try:
        session = wire.session_name(wire.create_session(channel, tokens(READER.sub), ORDERS))
        result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1),
                            tokens(READER.sub))
    finally:
        channel.close()

    assert result.code == grpc.StatusCode.OK, (result.code, result.details)
    assert mock.servicer.sessions[session].creator_role == READER.role
    assert sidecar.audit.by_request_id(result.request_id)["decision"] == "allow"
    allowed(sidecar.audit, mark, "CreateSession")
    assert_upstream_credential(mock, tokens.all)
