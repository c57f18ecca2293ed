"""Raw gRPC calls with hand-made request bytes, for what the official client never sends:
someone else's session name, a message that repeats field 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.cloud.spanner_v1.types import spanner

SPANNER = "/google.spanner.v1.Spanner"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    """One wire-type-2 field: key, length, payload."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def execute_sql(session: str, sql: str) -> bytes:
    """An ExecuteSqlRequest (single-use read-only by default), encoded by the client library."""
    return spanner.ExecuteSqlRequest.serialize(spanner.ExecuteSqlRequest(session=session, sql=sql))


def execute_sql_repeating_session(first: str, second: str, sql: str) -> bytes:
    """ExecuteSqlRequest with field 1 (`session`) twice: a parser keeps the last one, so a proxy
    that authorized the first could be bypassed. Field 3 is `sql`.
    """
    return (
        length_delimited(1, first.encode())
        + length_delimited(1, second.encode())
        + length_delimited(3, sql.encode())
    )


@dataclass
class RawResult:
    """The outcome of one raw unary call."""

    code: grpc.StatusCode
    details: str
    response: bytes | None
    initial_metadata: dict[str, str | bytes]
    trailing_metadata: dict[str, str | bytes]

    @property
    def request_id(self) -> str | None:
        return self.initial_metadata.get("x-request-id") or self.trailing_metadata.get("x-request-id")


def _as_dict(metadata) -> dict[str, str | bytes]:
    """Metadata as a dict; `-bin` keys keep their bytes (grpc-status-details-bin)."""
    return dict(metadata or ())


def unary(channel: grpc.Channel, method: str, request: bytes, token: str | None,
          extra_metadata: tuple = (), timeout: float = 10.0) -> RawResult:
    """Calls `/google.spanner.v1.Spanner/<method>` with raw bytes (no serializers at all)."""
    call = channel.unary_unary(f"{SPANNER}/{method}", request_serializer=None,
                               response_deserializer=None)
    metadata = list(extra_metadata)
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    try:
        response, rpc = call.with_call(request, metadata=metadata, timeout=timeout)
        return RawResult(grpc.StatusCode.OK, "", response, _as_dict(rpc.initial_metadata()),
                         _as_dict(rpc.trailing_metadata()))
    except grpc.RpcError as e:
        return RawResult(e.code(), e.details() or "", None, _as_dict(e.initial_metadata()),
                         _as_dict(e.trailing_metadata()))


def create_session(channel: grpc.Channel, token: str | None, database: str,
                   role: str = "") -> RawResult:
    """A CreateSession sent by hand, so the test learns the session name the library hides."""
    request = spanner.CreateSessionRequest(
        database=database, session=spanner.Session(creator_role=role)
    )
    return unary(channel, "CreateSession", spanner.CreateSessionRequest.serialize(request), token)


def session_name(result: RawResult) -> str:
    """The name of the session a successful CreateSession returned."""
    assert result.code == grpc.StatusCode.OK, (result.code, result.details)
    return spanner.Session.deserialize(result.response).name


def tls_channel(target: str, ca_pem: bytes) -> grpc.Channel:
    """A TLS channel to the gateway trusting only the test CA."""
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca_pem))
