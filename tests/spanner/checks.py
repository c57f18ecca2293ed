"""Assertions shared by the tests: what upstream saw, and what the audit log says."""

from __future__ import annotations

import json

from deployment import UPSTREAM_TOKEN
from mockspanner import MockSpannerServer
from processes import AuditLog

SPANNER = "/google.spanner.v1.Spanner"


def method(rpc: str) -> str:
    """The gRPC path of a Spanner RPC, as the audit's `method` names it."""
    return f"{SPANNER}/{rpc}"


def assert_upstream_credential(mock: MockSpannerServer, jwts: list[str]) -> None:
    """Every upstream call carried intentgate's own credential and no caller token anywhere."""
    calls = mock.recorder.calls
    assert calls, "the mock saw no call at all"
    for call in calls:
        assert call.metadata.get("authorization") == f"Bearer {UPSTREAM_TOKEN}", (
            f"{call.method} reached upstream with authorization "
            f"{call.metadata.get('authorization')!r}"
        )
        for jwt in jwts:
            leaked = [k for k, v in call.metadata.items() if jwt in v]
            assert not leaked, f"{call.method} carried the caller's JWT upstream in {leaked}"


def assert_record_clean(record: dict, jwts: list[str]) -> None:
    """The fields every record has, and never a token."""
    assert record.get("request_id"), record
    assert record.get("protocol") == "grpc", record
    assert str(record.get("method", "")).startswith(SPANNER + "/"), record
    text = json.dumps(record)
    for jwt in jwts:
        assert jwt not in text, "an audit record contains a caller's JWT"
        # The signature alone would be just as bad.
        assert jwt.rsplit(".", 1)[-1] not in text, "an audit record contains a JWT signature"
    assert UPSTREAM_TOKEN not in text, "an audit record contains the upstream token"


def allowed(audit: AuditLog, mark: int, rpc: str, count: int = 1) -> list[dict]:
    """Waits for `count` allow records of `rpc` after `mark`."""
    return audit.wait_for(
        f"{count} allow of {rpc}",
        lambda r: r.get("decision") == "allow" and r.get("method") == method(rpc),
        mark, count=count,
    )


def record_of_error(audit: AuditLog, mark: int, error_text: str) -> dict:
    """The audit record whose request ID the denial's message carries."""
    return audit.wait_for(
        "the record whose request_id is in the error message",
        lambda r: bool(r.get("request_id")) and r["request_id"] in error_text,
        mark,
    )[0]


def assert_denied_record(audit: AuditLog, mark: int, error_text: str, rpc: str,
                         jwts: list[str], decision: str = "deny",
                         header_request_id: str | None = None) -> dict:
    """The denial's message carries a request ID, and the audit has a matching `deny` record
    for `rpc`. `header_request_id`: the x-request-id the denial carried, which must match."""
    record = record_of_error(audit, mark, error_text)
    if header_request_id is not None:
        assert header_request_id == record["request_id"], (header_request_id, record)
    assert record["decision"] == decision, record
    assert record["method"] == method(rpc), record
    assert record.get("reason"), record
    assert_record_clean(record, jwts)
    return record
