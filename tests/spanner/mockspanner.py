"""Google's mock Spanner server (shipped in the google-cloud-spanner wheel), bound to 127.0.0.1,
with a server interceptor that records every call's metadata.

The mock records request messages (`servicer.requests`) but not metadata, and the tests must
see what intentgate sent upstream: the `authorization` it swapped in, never the caller's JWT.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.cloud.spanner_v1 import TypeCode
from google.cloud.spanner_v1.testing import spanner_database_admin_pb2_grpc as admin_grpc
from google.cloud.spanner_v1.testing import spanner_pb2_grpc as spanner_grpc
from google.cloud.spanner_v1.testing.mock_database_admin import DatabaseAdminServicer
from google.cloud.spanner_v1.testing.mock_spanner import SpannerServicer
from google.cloud.spanner_v1.types import result_set, spanner
from google.cloud.spanner_v1.types import type as spanner_type
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status.rpc_status import _Status

SELECT_1 = "SELECT 1"
UPDATE_ORDERS = "UPDATE orders SET status = 'shipped' WHERE id = 1"


@dataclass(frozen=True)
class Call:
    """One call the mock received: its gRPC path and its metadata (keys lower-case)."""

    method: str
    metadata: dict[str, str]


class MetadataRecorder(grpc.ServerInterceptor):
    """Records (method, metadata) of every incoming call, before the servicer runs.

    The mock itself records only request messages; credential swapping is only visible here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def intercept_service(self, continuation, handler_call_details):
        metadata = {k: v for k, v in handler_call_details.invocation_metadata if isinstance(v, str)}
        with self._lock:
            self._calls.append(Call(handler_call_details.method, metadata))
        return continuation(handler_call_details)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class SessionAwareSpannerServicer(SpannerServicer):
    """Google's mock servicer, with a GetSession that behaves like real Spanner.

    intentgate binds each session to the database role that created it. When a session-scoped
    call reaches a replica that did not create the session, that replica asks upstream
    `GetSession` (with its own credential) and reads the session's `creator_role`. Real Spanner
    returns the stored Session, `creator_role` included; Google's mock returns an empty
    `Session()` for any name, which would make every foreign session look role-less. So this
    subclass answers from the mock's own `sessions` dict, and NOT_FOUND for a name it never
    created, as Spanner does.
    """

    def GetSession(self, request, context):
        self._requests.append(request)
        session = self.sessions.get(request.name)
        if session is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Session not found: {request.name}")
        return session


class MockSpannerServer:
    """The mock on 127.0.0.1:<random port>, with the results the tests use registered."""

    def __init__(self) -> None:
        self.recorder = MetadataRecorder()
        self.servicer = SessionAwareSpannerServicer()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16), interceptors=[self.recorder]
        )
        spanner_grpc.add_SpannerServicer_to_server(self.servicer, self._server)
        admin_grpc.add_DatabaseAdminServicer_to_server(DatabaseAdminServicer(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.reset()
        self._server.start()

    @property
    def url(self) -> str:
        """The upstream URL intentgate dials (h2c)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=None)

    def reset(self) -> None:
        """Forget recorded requests, metadata and queued errors; re-register the results.

        Sessions are kept: a session an earlier test created still exists upstream, as it would.
        """
        self.servicer.clear_requests()
        self.servicer.clear_results()
        self.recorder.clear()
        mock = self.servicer.mock_spanner
        if hasattr(mock, "_errors_list"):
            mock._errors_list.clear()
        mock.add_result(SELECT_1, select1_result())
        mock.add_result(UPDATE_ORDERS, dml_result(1))

    # --- what the mock saw ------------------------------------------------------------------

    @property
    def requests(self) -> list:
        return list(self.servicer.requests)

    def requests_of(self, kind: type) -> list:
        """Recorded requests of one proto-plus type, e.g. `spanner.CommitRequest`."""
        return [r for r in self.requests if isinstance(r, kind)]

    def requests_for_database(self, database: str) -> list:
        """Requests naming this database or one of its sessions (field 1 of every request)."""
        return [r for r in self.requests if resource_of(r).startswith(database)]

    def created_sessions(self, database: str | None = None) -> list[spanner.Session]:
        """Session templates of CreateSession/BatchCreateSessions requests, in order."""
        out = []
        for r in self.requests:
            if database is not None and getattr(r, "database", None) != database:
                continue
            if isinstance(r, spanner.CreateSessionRequest):
                out.append(r.session)
            elif isinstance(r, spanner.BatchCreateSessionsRequest):
                out.append(r.session_template)
        return out

    def sessions_with_role(self, database: str, role: str) -> list[str]:
        """Names of sessions the mock created in `database` with this creator_role."""
        prefix = database + "/sessions/"
        return [
            name
            for name, s in list(self.servicer.sessions.items())
            if name.startswith(prefix) and s.creator_role == role
        ]

    def inject_aborted(self, method: str, retry_delay_ms: int = 1) -> None:
        """Queue one ABORTED with a google.rpc.RetryInfo detail for `method` (e.g. "Commit")."""
        self.inject(method, grpc.StatusCode.ABORTED, "Transaction was aborted.", retry_delay_ms)

    def inject(self, method: str, code: grpc.StatusCode, message: str,
               retry_delay_ms: int | None = None) -> None:
        """Queue one error for the next call of `method` (Google's mock pops one per call; only
        BatchCreateSessions, ExecuteSql, ExecuteStreamingSql, ExecuteBatchDml and Commit
        consult the queue). With `retry_delay_ms`, the status carries a RetryInfo detail in
        grpc-status-details-bin, as Spanner's ABORTED does."""
        details = []
        if retry_delay_ms is not None:
            retry = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(nanos=retry_delay_ms * 1_000_000)
            )
            detail = any_pb2.Any()
            detail.Pack(retry)
            details.append(detail)
        status = status_pb2.Status(code=code.value[0], message=message, details=details)
        self.servicer.mock_spanner.add_error(
            method,
            _Status(
                code=code,
                details=message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            ),
        )


def resource_of(request) -> str:
    """Field 1 of a Spanner request: the database or session it names."""
    for field in ("database", "session", "name"):
        value = getattr(request, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


def select1_result() -> result_set.ResultSet:
    """One INT64 column `c`, one row: 1 (INT64 travels as a decimal string)."""
    field = spanner_type.StructType.Field(name="c", type_=spanner_type.Type(code=TypeCode.INT64))
    result = result_set.ResultSet(
        metadata=result_set.ResultSetMetadata(row_type=spanner_type.StructType(fields=[field]))
    )
    result.rows.extend([("1",)])
    return result


def dml_result(rows: int) -> result_set.ResultSet:
    """A DML result: no columns, `row_count_exact` = rows."""
    return result_set.ResultSet(
        metadata=result_set.ResultSetMetadata(row_type=spanner_type.StructType(fields=[])),
        stats=result_set.ResultSetStats(row_count_exact=rows),
    )
