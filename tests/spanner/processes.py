"""The real processes of the suite: the OIDC issuer peer (node) and intentgate itself.

Every process binds 127.0.0.1 only, logs to a file the tests show on failure, and is stopped
by `stop()` (SIGTERM, then SIGKILL), which the fixtures register as finalizers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now (intentgate is given fixed ports in its config)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, check: Callable[[], object], timeout: float = 10.0, interval: float = 0.02):
    """Calls `check` until it returns something truthy, and returns that; fails after `timeout`.

    Used instead of sleeps: audit records are written after the response, processes take a
    moment to bind.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """A child process with its stderr in a log file; `stop()` is idempotent."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) -> None:
        self.log = log
        self._log_file = open(log, "wb")
        # Same process group as pytest: a Ctrl-C or a group kill reaches the children too.
        self.proc = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=self._log_file, env=env, cwd=REPO_ROOT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log_file.close()


class Issuer:
    """tests/peers/oidc/issuer.mjs: a real OIDC issuer plus a control server that mints tokens."""

    AUDIENCE = "spanner-gateway"

    def __init__(self, workdir: Path) -> None:
        script = REPO_ROOT / "tests/peers/oidc/issuer.mjs"
        if not (REPO_ROOT / "tests/peers/oidc/node_modules").is_dir():
            raise RuntimeError("the OIDC issuer's npm packages are missing: run scripts/ensure-peers")
        # stdin is a pipe: the issuer exits when it closes, so a killed pytest leaves no orphan.
        self._process = Process(
            ["node", str(script), "--port", "0", "--default-aud", self.AUDIENCE],
            workdir / "issuer.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        line = self._process.proc.stdout.readline()
        if not line:
            self._process.stop()
            raise RuntimeError(f"the OIDC issuer did not start:\n{tail(self._process.log)}")
        ready = json.loads(line)
        self.url: str = ready["issuer"]
        self.control: str = ready["control"]

    def principal(self, sub: str) -> str:
        """The Cedar principal intentgate's OIDC plugin makes of this subject."""
        return f'Oidc::Subject::"{self.url}#{sub}"'

    def mint(self, sub: str, kind: str = "valid", **extra) -> str:
        """A token for `sub` from the control API (`kind` as in tests/peers/oidc/README.md)."""
        body = json.dumps({"kind": kind, "sub": sub, **extra}).encode()
        request = urllib.request.Request(
            f"{self.control}/mint", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode().strip()

    def stop(self) -> None:
        self._process.stop()


def intentgate_binary() -> Path:
    """INTENTGATE_BIN, else ${CARGO_TARGET_DIR:-target}/debug/intentgate."""
    if os.environ.get("INTENTGATE_BIN"):
        return Path(os.environ["INTENTGATE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "intentgate"


def build_intentgate() -> Path:
    """Brings the intentgate binary up to date (`cargo build -p intentgate`, a no-op when
    nothing changed), unless INTENTGATE_BIN names one; returns its path."""
    if not os.environ.get("INTENTGATE_BIN"):
        subprocess.run(
            ["cargo", "build", "--quiet", "-p", "intentgate", "--bin", "intentgate"],
            cwd=REPO_ROOT, check=True, stdin=subprocess.DEVNULL,
        )
    binary = intentgate_binary()
    if not binary.is_file():
        raise RuntimeError(f"no intentgate binary at {binary}")
    return binary


def plugin(name: str) -> Path:
    """A guest plugin's .wasm from INTENTGATE_PLUGINS_DIR or plugins/target/components."""
    folder = Path(
        os.environ.get("INTENTGATE_PLUGINS_DIR")
        or REPO_ROOT / "plugins/target/components"
    )
    path = folder / f"intentgate_{name}.wasm"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run scripts/build-plugins")
    return path


class Gateway:
    """`intentgate run --config <config>`, ready once its admin `/readyz` answers 200."""

    def __init__(self, name: str, config: Path, admin_port: int, port: int, audit: Path,
                 env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.port = port
        self.audit = AuditLog(audit)
        self._process = Process(
            [str(intentgate_binary()), "run", "--config", str(config)],
            config.with_suffix(".log"), env={**os.environ, **env},
        )
        self._wait_ready(admin_port)

    def _wait_ready(self, admin_port: int) -> None:
        def ready() -> bool:
            if not self._process.alive():
                raise RuntimeError(
                    f"intentgate ({self.name}) exited with {self._process.proc.returncode}:\n"
                    f"{tail(self._process.log)}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        poll(f"intentgate ({self.name}) to be ready", ready, timeout=60)

    @property
    def target(self) -> str:
        """host:port for gRPC channels and ClientOptions.api_endpoint."""
        return f"127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return tail(self._process.log)

    def stop(self) -> None:
        self._process.stop()


class AuditLog:
    """intentgate's audit file: one JSON object per line, one line per attempt."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # A line is complete once its newline is written; ignore a partial last line.
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def mark(self) -> int:
        """How many records exist now; `since(mark)` returns only the later ones."""
        return len(self.records())

    def since(self, mark: int) -> list[dict]:
        return self.records()[mark:]

    def wait_for(self, what: str, predicate: Callable[[dict], bool], mark: int = 0,
                 count: int = 1, timeout: float = 10.0) -> list[dict]:
        """Polls until at least `count` records after `mark` match `predicate`."""

        def found():
            matches = [r for r in self.since(mark) if predicate(r)]
            return matches if len(matches) >= count else None

        try:
            return poll(f"audit records: {what}", found, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\naudit since mark:\n" + "\n".join(
                json.dumps(r) for r in self.since(mark))) from None

    def by_request_id(self, request_id: str, timeout: float = 10.0) -> dict:
        """The record of one attempt, by the request ID a response or denial carried."""
        return self.wait_for(
            f"request_id {request_id}", lambda r: r.get("request_id") == request_id,
            timeout=timeout,
        )[0]
