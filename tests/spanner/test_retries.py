"""Transient upstream errors: intentgate retries a replay-safe unary call on UNAVAILABLE and
RESOURCE_EXHAUSTED itself (nothing has reached the client yet), and passes ABORTED through
untouched, RetryInfo included, because only the client can re-run its transaction.
"""

from __future__ import annotations

import grpc
import pytest
from google.cloud.spanner_v1.types import mutation, spanner, transaction
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

import wire
from checks import assert_upstream_credential
from deployment import ORDERS, READER, WRITER
from mockspanner import SELECT_1


@pytest.fixture
def channel(gateway, pki):
    ch = wire.tls_channel(gateway.target, pki.ca_pem)
    yield ch
    ch.close()


def own_session(mock, channel, token: str) -> str:
    """A fresh session of the caller's, then a clean slate in the mock."""
    name = wire.session_name(wire.create_session(channel, token, ORDERS))
    mock.reset()
    return name


def retry_info(result: wire.RawResult) -> error_details_pb2.RetryInfo | None:
    """The RetryInfo detail of a failed call's google.rpc.Status, if any."""
    raw = result.trailing_metadata.get("grpc-status-details-bin")
    if raw is None:
        return None
    for detail in status_pb2.Status.FromString(raw).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info
    return None


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_transient_error_on_a_single_use_read_is_retried_by_intentgate(
        mock, gateway, tokens, channel, code):
    """A single-use read-only ExecuteSql is replay-safe: the caller never sees the error."""
    jwt = tokens(READER.sub)
    session = own_session(mock, channel, jwt)
    mock.inject("ExecuteSql", code, "try again")

    result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), jwt)

    assert result.code == grpc.StatusCode.OK, (result.code, result.details)
    assert len(mock.requests_of(spanner.ExecuteSqlRequest)) == 2
    record = gateway.audit.by_request_id(result.request_id)
    assert record["decision"] == "allow", record
    assert record.get("retries") == 1, record
    assert_upstream_credential(mock, tokens.all)


def test_aborted_passes_through_with_retry_info(mock, gateway, tokens, channel):
    """ABORTED reaches the caller as upstream sent it, RetryInfo detail and all, once."""
    jwt = tokens(READER.sub)
    session = own_session(mock, channel, jwt)
    mock.inject_aborted("ExecuteSql", retry_delay_ms=250)

    result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), jwt)

    assert result.code == grpc.StatusCode.ABORTED, (result.code, result.details)
    assert result.details == "Transaction was aborted."
    info = retry_info(result)
    assert info is not None, result.trailing_metadata
    assert info.retry_delay.ToMilliseconds() == 250
    assert len(mock.requests_of(spanner.ExecuteSqlRequest)) == 1
    assert not gateway.audit.by_request_id(result.request_id).get("retries"), "ABORTED was retried"


def test_passed_through_error_is_audited_as_upstreams(mock, gateway, tokens, channel):
    """The record of a call upstream failed says so (grpc_status), and nothing else: the
    caller did nothing wrong, so no error about the caller's stream may be recorded."""
    jwt = tokens(READER.sub)
    session = own_session(mock, channel, jwt)
    mock.inject_aborted("ExecuteSql")

    result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), jwt)

    assert result.code == grpc.StatusCode.ABORTED, (result.code, result.details)
    record = gateway.audit.by_request_id(result.request_id)
    assert record["grpc_status"] == grpc.StatusCode.ABORTED.value[0], record
    assert not record.get("errors"), f"spurious errors in the audit record: {record.get('errors')}"


def test_single_use_commit_is_not_retried(mock, gateway, tokens, channel):
    """A single-use read-write Commit is not replay-protected (mutations could apply twice), so
    UNAVAILABLE goes back to the caller and upstream saw exactly one Commit."""
    jwt = tokens(WRITER.sub)
    session = own_session(mock, channel, jwt)
    mark = gateway.audit.mark()
    mock.inject("Commit", grpc.StatusCode.UNAVAILABLE, "try again")
    insert = mutation.Mutation(insert=mutation.Mutation.Write(
        table="orders", columns=["id"],
        values=[struct_pb2.ListValue(values=[struct_pb2.Value(string_value="3")])]))
    commit = spanner.CommitRequest(
        session=session,
        single_use_transaction=transaction.TransactionOptions(
            read_write=transaction.TransactionOptions.ReadWrite()),
        mutations=[insert],
    )

    result = wire.unary(channel, "Commit", spanner.CommitRequest.serialize(commit), jwt)

    assert result.code == grpc.StatusCode.UNAVAILABLE, (result.code, result.details)
    assert len(mock.requests_of(spanner.CommitRequest)) == 1
    record = gateway.audit.wait_for(
        "the Commit record", lambda r: r.get("method", "").endswith("/Commit"), mark)[0]
    assert record["decision"] == "allow", record
    assert not record.get("retries"), record
    assert record["grpc_status"] == grpc.StatusCode.UNAVAILABLE.value[0], record
