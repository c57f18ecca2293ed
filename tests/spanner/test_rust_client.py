"""The official Rust client (google-cloud-spanner, via the workspace crate tests/rust-client) as
a second client through the same TLS listener and mock.

Skipped only when the binary has not been built
(`cargo build -p intentgate-spanner-rust-client`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from google.cloud.spanner_v1.types import spanner

from checks import allowed, assert_denied_record, assert_upstream_credential
from deployment import ORDERS, READER, SECRET, WRITER
from mockspanner import SELECT_1, UPDATE_ORDERS
from processes import REPO_ROOT

BINARY_NAME = "intentgate-spanner-rust-client"


def rust_client_binary() -> Path:
    """INTENTGATE_SPANNER_RUST_CLIENT, else ${CARGO_TARGET_DIR:-target}/debug/<name>."""
    if os.environ.get("INTENTGATE_SPANNER_RUST_CLIENT"):
        return Path(os.environ["INTENTGATE_SPANNER_RUST_CLIENT"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / BINARY_NAME


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_line(stderr: str) -> str:
    """The client's one-line summary: `ERROR <CODE> <message>`."""
    return next((line for line in stderr.splitlines() if line.startswith("ERROR ")), stderr)


@pytest.fixture
def rust_client(gateway, pki, tmp_path):
    """Runs the Rust client against the TLS listener; returns the CompletedProcess."""
    binary = rust_client_binary()
    if not binary.is_file():
        pytest.skip(f"{binary} does not exist: build it with "
                    f"`cargo build -p {BINARY_NAME}` to run the Rust client through intentgate")

    def run(token: str, database: str, role: str | None, *statement: str):
        """`statement` is ("--sql", SQL) or ("--dml", DML)."""
        token_file = tmp_path / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        role_args = ["--role", role] if role is not None else []
        return subprocess.run(
            [str(binary), "--endpoint", f"https://{gateway.target}", "--ca", str(pki.ca_cert),
             "--token-file", str(token_file), "--database", database, *role_args,
             *(statement or ("--sql", SELECT_1))],
            capture_output=True, text=True, timeout=45, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "SPANNER_EMULATOR_HOST"},
        )

    return run


def test_rust_client_queries_through_intentgate(mock, gateway, tokens, rust_client):
    """SELECT 1 through intentgate; the session got the mapped role; upstream saw only
    intentgate's credential."""
    mark = gateway.audit.mark()
    done = rust_client(tokens(READER.sub), ORDERS, READER.role)

    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}\n{gateway.log_tail()}"
    assert json_lines(done.stdout) == [[1]]
    assert [s.creator_role for s in mock.created_sessions(ORDERS)] == [READER.role]
    allowed(gateway.audit, mark, "CreateSession")
    assert_upstream_credential(mock, tokens.all)


def test_rust_client_is_denied_another_database(mock, gateway, tokens, rust_client):
    """No permit on `secret`: the client exits non-zero with the gRPC error."""
    mark = gateway.audit.mark()
    done = rust_client(tokens(READER.sub), SECRET, READER.role)

    assert done.returncode != 0, done.stdout
    assert error_line(done.stderr).startswith("ERROR PERMISSION_DENIED "), done.stderr
    assert mock.requests_for_database(SECRET) == []
    assert_denied_record(gateway.audit, mark, done.stderr, "CreateSession", tokens.all)


def test_rust_client_read_write_transaction(mock, gateway, tokens, rust_client):
    """The writer's DML and Commit through the Rust transaction runner, with no role asked:
    the session gets the mapped one."""
    mark = gateway.audit.mark()
    done = rust_client(tokens(WRITER.sub), ORDERS, None, "--dml", UPDATE_ORDERS)

    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}\n{gateway.log_tail()}"
    assert json_lines(done.stdout) == [{"rows_modified": 1}]
    assert [s.creator_role for s in mock.created_sessions(ORDERS)] == [WRITER.role]
    assert len(mock.requests_of(spanner.CommitRequest)) == 1
    allowed(gateway.audit, mark, "Commit")
    assert_upstream_credential(mock, tokens.all)


def test_rust_client_cannot_choose_another_role(mock, gateway, tokens, rust_client):
    """Asking for a role the policy does not map the reader to fails before upstream."""
    mark = gateway.audit.mark()
    done = rust_client(tokens(READER.sub), ORDERS, "orders_writer")

    assert done.returncode != 0, done.stdout
    assert error_line(done.stderr).startswith(
        ("ERROR PERMISSION_DENIED ", "ERROR INVALID_ARGUMENT ")), done.stderr
    assert mock.created_sessions() == []
    assert_denied_record(gateway.audit, mark, done.stderr, "CreateSession", tokens.all)
