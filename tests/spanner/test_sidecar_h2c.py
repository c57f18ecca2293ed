"""intentgate's h2c gRPC listener (the sidecar shape). The official clients in emulator mode
speak plaintext and send no credential at all, so they are refused, unless the sidecar has the
workload's own credential (`credential.ambient_file`), in which case they act as the workload;
a caller that does send a bearer token over h2c is served.
"""

from __future__ import annotations

import time

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


def test_emulator_mode_client_acts_as_the_workload(mock, sidecar_ambient, tokens,
                                                    workload_token_file, open_database):
    """SPANNER_EMULATOR_HOST-style app behind a sidecar holding the workload's token: no code
    change, no credential in the app, and still a verified principal, a policy decision and a
    forced role on every RPC."""
    mark = sidecar_ambient.audit.mark()
    db = open_database(sidecar_ambient.target, None)

    with db.snapshot() as snapshot:
        rows = list(snapshot.execute_sql(SELECT_1))

    assert rows == [[1]]
    create = [r for r in mock.requests if type(r).__name__ == "CreateSessionRequest"][-1]
    assert create.session.creator_role == READER.role
    records = sidecar_ambient.audit.since(mark)
    assert records and all(r["decision"] == "allow" for r in records), records
    assert all(r.get("ambient_credential") is True for r in records), records
    assert all(r["principal"].endswith(f'#{READER.sub}"') for r in records), records
    assert_upstream_credential(mock, tokens.all)


def test_an_ambient_token_the_issuer_rejects_authenticates_no_one(mock, sidecar_ambient,
                                                                   workload_token_file,
                                                                   tokens, open_database):
    """A tampered or foreign workload token is verified like any other and refused."""
    good = workload_token_file.read_text()
    head, payload, signature = good.strip().split(".")
    workload_token_file.write_text(f"{head}.{payload}.{signature[::-1]}\n")
    try:
        # The sidecar re-reads the file every few seconds.
        time.sleep(5.5)
        mark = sidecar_ambient.audit.mark()
        db = open_database(sidecar_ambient.target, None)
        with pytest.raises(exceptions.Unauthenticated):
            with db.snapshot() as snapshot:
                list(snapshot.execute_sql(SELECT_1))
        records = sidecar_ambient.audit.since(mark)
        assert records and records[0]["decision"] == "deny", records
        assert records[0].get("ambient_credential") is True, records
    finally:
        workload_token_file.write_text(good)
        time.sleep(5.5)
