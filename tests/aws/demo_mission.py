"""The mission demo (`scripts/demo`): the deployment of tests/aws/test_mission.py, started once
on 127.0.0.1, and a short story told with the official Python Spanner client.

    app (google-cloud-spanner, emulator mode: no credential)
      │ h2c, loopback
      ▼
    sidecar (intentgate): the task's own AWS identity, from a fake ECS credentials endpoint
      │ serving moto-issued task-role credentials; a fresh signed task token for the gateway
      │ TLS
      ▼
    gateway (intentgate): aws-iam identity verified against moto's STS (signature checking
      │ on), Cedar policies; Google credential by workload identity federation of its own role
      ▼
    Google's mock Spanner (from the google-cloud-spanner wheel), with a metadata recorder

For each request it prints who asked for what, the gRPC status, the request IDs, and the audit
records of the sidecar and the gateway; then what Spanner saw. Every expectation is checked:
the exit status is 0 only if everything behaved as it should (scripts/test runs it as a check).

    tests/peers/python/.venv/bin/python tests/aws/demo_mission.py

Run it through scripts/demo, which builds intentgate and the plugins first. Environment:
INTENTGATE_BIN, INTENTGATE_PLUGINS_DIR (as for the test suites), NO_COLOR, and
INTENTGATE_DEMO_KEEP=1 to keep the run folder (configs, policies, audit files, logs).
Reads no stdin.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "spanner")]

# The harness's environment, as tests/aws/conftest.py sets it: no emulator redirection, no
# client metrics, and no AWS credential of this machine (the intentgate processes inherit this
# environment; their AWS identity must come from the fake ECS endpoints only).
os.environ["SPANNER_DISABLE_BUILTIN_METRICS"] = "true"
os.environ.pop("SPANNER_EMULATOR_HOST", None)
for _name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import datetime  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib import metadata as package_metadata  # noqa: E402

import grpc  # noqa: E402
from google.api_core import exceptions  # noqa: E402
from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud.spanner_v1 import Client, TypeCode  # noqa: E402
from google.cloud.spanner_v1.database_sessions_manager import DatabaseSessionsManager  # noqa: E402
from google.cloud.spanner_v1.types import result_set, spanner  # noqa: E402
from google.cloud.spanner_v1.types import type as spanner_type  # noqa: E402

import awstoken  # noqa: E402
import mission  # noqa: E402
import test_mission  # noqa: E402 - the mission's deployment (Mission) and its checks
import wire  # noqa: E402
from awsdeploy import ORDERS, PERMIT_ID, READER_ROLE, principal  # noqa: E402
from checks import method  # noqa: E402
from mockspanner import UPDATE_ORDERS, MockSpannerServer  # noqa: E402
from pki import make_pki  # noqa: E402
from processes import poll  # noqa: E402
from stsdouble import ACCOUNT, STS_HOST, StsDouble  # noqa: E402

# Database.close() joins the multiplexed-session maintenance thread; make it return at once.
DatabaseSessionsManager._MAINTENANCE_THREAD_POLLING_INTERVAL = datetime.timedelta(milliseconds=50)

ORDERS_QUERY = "SELECT id, status FROM orders ORDER BY id"
ORDERS_ROWS = [[1, "pending"], [2, "shipped"], [3, "pending"]]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASKS = {"A": ("TaskRoleA", test_mission.TASK_A), "B": ("TaskRoleB", test_mission.TASK_B)}

# --- output ----------------------------------------------------------------------------------

_COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
# intentgate's own logs (files the demo shows on failure) without colours.
os.environ["NO_COLOR"] = "1"


def _sgr(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _COLOUR else text


def bold(text: str) -> str:
    return _sgr("1", text)


def dim(text: str) -> str:
    return _sgr("2", text)


def green(text: str) -> str:
    return _sgr("32", text)


def red(text: str) -> str:
    return _sgr("31", text)


def out(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    out()
    out(bold(f"== {text}"))


def short(value: str, keep: int = 12) -> str:
    """A prefix of a token or key, never the whole of it."""
    return value if len(value) <= keep else value[:keep] + "…"


def rpc_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def action_name(record: dict) -> str:
    """`Spanner::Action::"read"` -> read."""
    return record.get("action", "").removeprefix("Spanner::Action::").strip('"')


def status_name(code: int | None) -> str:
    if code is None:
        return "-"
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


def client_message(error: exceptions.GoogleAPICallError) -> str:
    """The status message intentgate sent, without the client library's own request id, which
    it appends (`, request_id = 1.2…`) and which is not intentgate's."""
    return re.sub(r",\s*request_id = [0-9.]+$", "", error.message or "")


class DemoFailure(Exception):
    """Something did not behave as the demo says it should."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


class Finalizers:
    """Stands in for pytest's `request`: Mission registers its finalizers here, and the demo
    runs them (last first) when it ends, whatever happened."""

    def __init__(self) -> None:
        self._finalizers: list = []

    def addfinalizer(self, finalizer) -> None:
        self._finalizers.append(finalizer)

    def run(self) -> None:
        while self._finalizers:
            try:
                self._finalizers.pop()()
            except Exception:  # noqa: BLE001 - stop everything else regardless
                pass


# --- the story -------------------------------------------------------------------------------


def orders_result() -> result_set.ResultSet:
    """What the mock answers to ORDERS_QUERY (INT64 travels as a decimal string)."""
    fields = [
        spanner_type.StructType.Field(name="id", type_=spanner_type.Type(code=TypeCode.INT64)),
        spanner_type.StructType.Field(name="status",
                                      type_=spanner_type.Type(code=TypeCode.STRING)),
    ]
    result = result_set.ResultSet(metadata=result_set.ResultSetMetadata(
        row_type=spanner_type.StructType(fields=fields)))
    result.rows.extend([(str(i), status) for i, status in ORDERS_ROWS])
    return result


class Demo:
    def __init__(self, run_dir: Path, finalizers: Finalizers) -> None:
        self.run_dir = run_dir
        self.finalizers = finalizers
        self.summary: list[tuple[str, str, str, str, str]] = []
        self.deployed: test_mission.Mission | None = None
        self.apps: dict = {}

    # --- start ---------------------------------------------------------------------------

    def start(self) -> None:
        heading("Starting the mission on 127.0.0.1 (no cloud account, nothing leaves this machine)")
        self.sts = StsDouble()
        self.finalizers.addfinalizer(self.sts.stop)
        self.sts.set_up_account()
        self.sts.enable_auth()
        # Prove moto checks signatures: a forged one sent straight to it must be refused.
        probe = awstoken.mint(self.sts.assume_role("TaskRoleA", "probe"))
        statuses = [self.sts.post_raw(dict(t.headers), t.body.encode())[0]
                    for t in (probe, probe.forged())]
        expect(statuses == [200, 403],
               f"moto's signature checking is not on (valid/forged token: {statuses})")
        self.sts_mark = self.sts.mark()  # the replays intentgate sends come after this

        self.mock = MockSpannerServer()
        self.finalizers.addfinalizer(self.mock.stop)
        self.mock.servicer.mock_spanner.add_result(ORDERS_QUERY, orders_result())
        pki = make_pki(self.run_dir / "pki")

        self.deployed = test_mission.Mission(
            self.finalizers, self.run_dir, self.sts, self.mock, pki,
            lambda role, session: self.sts.assume_role(role, session))
        d = self.deployed
        self.gateway = d.gateway
        self.sidecar = {"A": d.sidecars["TaskRoleA"], "B": d.sidecars["TaskRoleB"]}

        rows = [
            ("AWS STS + IAM", f"moto {package_metadata.version('moto')} at {self.sts.url}: "
             f"account {ACCOUNT}, roles TaskRoleA, TaskRoleB, IntentgateGateway"),
            ("", "signature checking on: a forged signature sent to it gets 403"),
            ("ECS task A", f"task {short(test_mission.TASK_A, 8)}, role TaskRoleA; credentials "
             f"endpoint {d.ecs['TaskRoleA'].url}"),
            ("ECS task B", f"task {short(test_mission.TASK_B, 8)}, role TaskRoleB; credentials "
             f"endpoint {d.ecs['TaskRoleB'].url}"),
            ("sidecar A", f"intentgate, h2c on {self.sidecar['A'].target}: task A's own identity, "
             f"TLS to the gateway"),
            ("sidecar B", f"intentgate, h2c on {self.sidecar['B'].target}: task B's own identity, "
             f"TLS to the gateway"),
            ("gateway", f"intentgate, TLS on {self.gateway.target}: aws-iam identity "
             f"(audience {mission.GATEWAY_AUDIENCE}), Cedar policies below"),
            ("", f"its own role IntentgateGateway (credentials endpoint "
             f"{d.ecs['IntentgateGateway'].url})"),
            ("Google STS", f"a fake at {d.google_sts.token_url}: workload identity federation, "
             f"checks the AWS subject token's signature"),
            ("Spanner", f"Google's mock server (google-cloud-spanner "
             f"{package_metadata.version('google-cloud-spanner')}) at {self.mock.url}"),
        ]
        out("  app (official client) --h2c, no credential--> sidecar (the task's own AWS identity)")
        out("    --TLS, a signed task token--> gateway (aws-iam identity, Cedar policies)")
        out("    --the gateway's federated Google token--> Spanner (Google's mock)")
        out()
        for name, text in rows:
            out(f"  {name:<14} {text}")
        out()
        out("  The gateway's policies (the sidecars permit only their own task; the gateway decides):")
        for line in test_mission.gateway_policies().strip().splitlines():
            out(dim(f"    {line}") if line.strip() else "")

    # --- helpers -------------------------------------------------------------------------

    def app(self, task: str):
        """Task `task`'s app: the official client in emulator mode (what SPANNER_EMULATOR_HOST
        does: AnonymousCredentials, plaintext), api_endpoint = its sidecar. One per task, kept
        for the whole story, as an app keeps its client."""
        if task in self.apps:
            return self.apps[task]
        client = Client(project="p", credentials=AnonymousCredentials(),
                        client_options=ClientOptions(api_endpoint=self.sidecar[task].target),
                        disable_builtin_metrics=True)
        db = client.instance("i").database("orders")

        def close() -> None:
            try:
                db.close()
            except Exception:  # noqa: BLE001 - a denied session has nothing to close
                pass

        self.finalizers.addfinalizer(close)
        self.apps[task] = db
        return db

    def marks(self) -> dict[str, int]:
        return {"A": self.sidecar["A"].audit.mark(), "B": self.sidecar["B"].audit.mark(),
                "gateway": self.gateway.audit.mark(), "upstream": len(self.mock.recorder.calls),
                "requests": len(self.mock.requests)}

    def records(self, task: str, marks: dict[str, int], count: int) -> tuple[list, list]:
        """The sidecar's records since the mark (at least `count`), and the gateway's, once
        every sidecar record has its gateway record(s) (linked by caller_request_id)."""
        sidecar = self.sidecar[task].audit.wait_for(f"sidecar {task} records", lambda r: True,
                                                    marks[task], count=count)

        def linked():
            g = self.gateway.audit.since(marks["gateway"])
            callers = {r.get("caller_request_id") for r in g}
            return g if all(r["request_id"] in callers for r in sidecar) else None

        try:
            gateway = poll("the gateway's records of the sidecar's requests", linked, timeout=10)
        except AssertionError as e:
            raise DemoFailure(str(e)) from None
        return self.sidecar[task].audit.since(marks[task]), gateway

    def show_decisions(self, task: str, sidecar_records: list, gateway_records: list) -> None:
        out("  decisions (one line per hop; request IDs link the two audit files):")
        by_caller: dict[str, list] = {}
        for r in gateway_records:
            by_caller.setdefault(r.get("caller_request_id", ""), []).append(r)
        # Gateway records of no sidecar request here (none expected) are shown too, last.
        ids = {s["request_id"] for s in sidecar_records}
        other = [g for g in gateway_records if g.get("caller_request_id") not in ids]
        for s in sidecar_records:
            self._decision_line(f"sidecar {task}", s)
            for g in by_caller.get(s["request_id"], []):
                self._decision_line("gateway", g, caller=s["request_id"])
        for g in other:
            self._decision_line("gateway", g)
        out("  audit records (as written, one JSON object per record):")
        for s in sidecar_records:
            out(f"    sidecar {task}: " + json.dumps(s))
            for g in by_caller.get(s["request_id"], []):
                out("    gateway:   " + json.dumps(g))
        for g in other:
            out("    gateway:   " + json.dumps(g))

    def _decision_line(self, hop: str, r: dict, caller: str = "") -> None:
        decision = r.get("decision", "?")
        paint = green if decision == "allow" else red
        policies = ", ".join(r.get("policies") or []) or "(none)"
        grpc_status = status_name(r.get("grpc_status"))
        out(f"    {hop:<10} {rpc_name(r.get('method', '')):<20} "
            f"{action_name(r):<8} "
            f"{paint(f'{decision:<5}')}  policy {policies:<26} -> {grpc_status}")
        details = [f"request {r['request_id']}"]
        if caller:
            details.append(f"for the sidecar's {caller}")
        if r.get("binding"):
            details.append(r["binding"])
        if r.get("ambient_credential"):
            details.append("the task's own identity (the app sent none)")
        if hop.startswith("sidecar") and decision == "allow" and r.get("grpc_status"):
            details.append("relayed the gateway's answer")
        if r.get("capability_lookup"):
            details.append("session role looked up upstream")
        out(dim(f"{'':15}{'; '.join(details)}"))
        if decision != "allow":
            out(dim(f"{'':15}reason: {r.get('reason', '')}"))

    def step(self, number: int, title: str, who: str, what: str, expected: str) -> None:
        heading(f"{number}. {title}")
        out(f"  who:      {who}")
        out(f"  request:  {what}")
        out(f"  expected: {expected}")

    def outcome(self, code: str, text: str = "") -> None:
        paint = green if code == "OK" else red
        out(f"  outcome:  {paint(code)}{(': ' + text) if text else ''}")

    def nothing_upstream(self, marks: dict[str, int], what: str) -> None:
        calls = self.mock.recorder.calls[marks["upstream"]:]
        expect(not calls and len(self.mock.requests) == marks["requests"],
               f"{what} reached Spanner: {[rpc_name(c.method) for c in calls]}")
        out("  Spanner:  received nothing")

    @staticmethod
    def who(task: str) -> str:
        role, task_id = TASKS[task]
        return f"task {task} (role {role}, ECS task {short(task_id, 8)}), through sidecar {task}"

    # --- 1: task A reads ------------------------------------------------------------------

    def task_a_reads(self) -> None:
        self.step(1, "Task A reads the orders", self.who("A"),
                  f"{ORDERS_QUERY}  (official Python client, no credential of its own)",
                  f"allowed by the gateway's policy {PERMIT_ID}, as database role {READER_ROLE}")
        marks = self.marks()
        db = self.app("A")
        with db.snapshot() as snapshot:
            rows = [list(row) for row in snapshot.execute_sql(ORDERS_QUERY)]
        expect(rows == ORDERS_ROWS, f"task A read {rows}, expected {ORDERS_ROWS}")
        self.outcome("OK", f"{len(rows)} rows")
        out(f"{'':12}id  status")
        for order_id, status in rows:
            out(f"{'':12}{order_id:<3} {status}")

        sidecar, gateway = self.records("A", marks, count=2)
        for r in sidecar:
            expect(r["decision"] == "allow" and r["grpc_status"] == 0
                   and r["principal"] == principal("TaskRoleA") and r.get("ambient_credential"),
                   f"sidecar A's record is not an allow with its task's identity: {r}")
        for r in gateway:
            expect(r["decision"] == "allow" and r["grpc_status"] == 0
                   and r["principal"] == principal("TaskRoleA") and r["policies"] == [PERMIT_ID],
                   f"the gateway's record is not an allow by {PERMIT_ID}: {r}")
        create = [r for r in gateway if r["method"] == method("CreateSession")]
        expect([r.get("binding") for r in create] == [f"database_role={READER_ROLE}"],
               f"the gateway's CreateSession records: {create}")
        self.show_decisions("A", sidecar, gateway)
        self.summary.append(("1", "task A", "reads the orders", "OK",
                             f"allowed: {PERMIT_ID}, as {READER_ROLE}"))

    # --- 2: task B reads ------------------------------------------------------------------

    def task_b_reads(self) -> None:
        self.step(2, "Task B reads the orders", self.who("B"),
                  f"{ORDERS_QUERY}  (official Python client, no credential of its own)",
                  "PERMISSION_DENIED at the gateway: no policy permits TaskRoleB (deny by default)")
        marks = self.marks()
        db = self.app("B")
        try:
            with db.snapshot() as snapshot:
                rows = list(snapshot.execute_sql(ORDERS_QUERY))
        except exceptions.PermissionDenied as e:
            denied = e
        else:
            raise DemoFailure(f"task B was allowed to read: {rows}")
        self.outcome("PERMISSION_DENIED", client_message(denied))
        sidecar, gateway = self.records("B", marks, count=1)
        denies = [r for r in gateway if r["decision"] == "deny"]
        expect(denies and denies[0]["principal"] == principal("TaskRoleB")
               and denies[0]["policies"] == [],
               f"no gateway deny for task B: {gateway}")
        expect(denies[0]["request_id"] in str(denied),
               "task B's error does not carry the gateway's request ID")
        expect(all(r["decision"] == "allow" and r["grpc_status"] == 7 for r in sidecar),
               f"sidecar B should let its own task through and relay the denial: {sidecar}")
        self.show_decisions("B", sidecar, gateway)
        self.nothing_upstream(marks, "task B's read")
        self.summary.append(("2", "task B", "reads the orders", "PERMISSION_DENIED",
                             "gateway: no policy permits TaskRoleB"))

    # --- 3: task A writes -----------------------------------------------------------------

    def task_a_writes(self) -> None:
        self.step(3, "Task A updates an order", self.who("A"),
                  f"{UPDATE_ORDERS}  (in a read-write transaction)",
                  "PERMISSION_DENIED at the gateway: task A's permit is for reads only")
        marks = self.marks()
        db = self.app("A")
        try:
            db.run_in_transaction(lambda tx: tx.execute_update(UPDATE_ORDERS))
        except exceptions.PermissionDenied as e:
            denied = e
        else:
            raise DemoFailure("task A was allowed to write")
        self.outcome("PERMISSION_DENIED", client_message(denied))
        sidecar, gateway = self.records("A", marks, count=1)
        denies = [r for r in gateway if r["decision"] == "deny"]
        expect(denies and denies[0]["principal"] == principal("TaskRoleA")
               and denies[0]["action"] == 'Spanner::Action::"write"',
               f"no gateway deny of task A's write: {gateway}")
        expect(denies[0]["request_id"] in str(denied),
               "task A's error does not carry the gateway's request ID")
        self.show_decisions("A", sidecar, gateway)
        dml = [r for r in self.mock.requests_of(spanner.ExecuteSqlRequest) if r.sql == UPDATE_ORDERS]
        expect(not dml and not self.mock.requests_of(spanner.CommitRequest),
               "task A's write reached Spanner")
        calls = self.mock.recorder.calls[marks["upstream"]:]
        if calls:
            out(f"  Spanner:  no write; saw only {', '.join(rpc_name(c.method) for c in calls)}")
        else:
            out("  Spanner:  received nothing")
        self.summary.append(("3", "task A", "updates an order", "PERMISSION_DENIED",
                             "gateway: no policy permits writes"))

    # --- 4: task B uses task A's session ---------------------------------------------------

    def task_b_uses_a_session(self) -> None:
        sessions = self.mock.sessions_with_role(ORDERS, READER_ROLE)
        expect(sessions, f"no session with creator_role {READER_ROLE} upstream")
        session = sessions[0]
        self.step(4, "Task B queries with task A's session", self.who("B"),
                  f"ExecuteSql on {short(session, 60)}\n{'':12}(a session task A's client created "
                  f"in step 1, as {READER_ROLE}; raw gRPC, as an attacker would send it)",
                  "PERMISSION_DENIED: sidecar B asks the gateway which role the session has, "
                  "as task B, and the gateway refuses")
        marks = self.marks()
        channel = grpc.insecure_channel(self.sidecar["B"].target)
        try:
            result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, ORDERS_QUERY),
                                None)
        finally:
            channel.close()
        expect(result.code == grpc.StatusCode.PERMISSION_DENIED,
               f"task B's query on task A's session got {result.code.name}, not PERMISSION_DENIED")
        self.outcome(result.code.name, result.details)
        out(f"  x-request-id: {result.request_id}")
        sidecar, gateway = self.records("B", marks, count=1)
        expect(sidecar and sidecar[-1]["decision"] == "deny"
               and sidecar[-1]["request_id"] == result.request_id,
               f"sidecar B did not record a deny with the request ID task B got: {sidecar}")
        denies = [r for r in gateway if r["decision"] == "deny"]
        expect(denies and denies[0]["principal"] == principal("TaskRoleB")
               and denies[0]["method"] == method("GetSession"),
               f"no gateway deny of task B's session lookup: {gateway}")
        self.show_decisions("B", sidecar, gateway)
        self.nothing_upstream(marks, "task B's query")
        self.summary.append(("4", "task B", "queries with task A's session", "PERMISSION_DENIED",
                             "gateway refused task B's session lookup"))

    # --- what upstream saw -----------------------------------------------------------------

    def upstream(self) -> None:
        d = self.deployed
        heading("What Spanner saw (the mock's recorder)")
        roles = [s.creator_role for s in self.mock.created_sessions(ORDERS)]
        expect(roles and all(r == READER_ROLE for r in roles),
               f"sessions were created with creator_role {roles}")
        out(f"  sessions created: {len(roles)}, with creator_role = {', '.join(roles)}")
        gateway_ids = {r["request_id"] for r in self.gateway.audit.records()}
        calls = self.mock.recorder.calls
        for call in calls:
            auth = call.metadata.get("authorization", "")
            rid = call.metadata.get("x-request-id", "")
            expect(rid in gateway_ids, f"{call.method} carried x-request-id {rid!r}, "
                   "which is not a gateway request ID")
            scheme, _, token = auth.partition(" ")
            out(f"  {rpc_name(call.method):<20} authorization: {scheme} {short(token, 14)}   "
                f"x-request-id: {rid} (the gateway's)")
        try:
            test_mission.assert_nothing_of_aws_upstream(self.mock, d)
            test_mission.assert_federated(d)
        except AssertionError as e:
            raise DemoFailure(str(e).splitlines()[0]) from None
        out(f"  every call carried the gateway's federated Google token; no AWS token, key or "
            f"signature ({len(d.aws_secrets())} values checked)")
        exchanges = d.google_sts.snapshot()
        gw_key = d.creds["IntentgateGateway"].access_key
        out(f"  Google STS: {len(exchanges)} token exchange(s), each a GetCallerIdentity signed by "
            f"the gateway role's key {short(gw_key, 8)} and naming the pool provider")
        replays = self.sts.caller_identity_calls(self.sts_mark)
        expect(replays and all(c.status == 200 for c in replays),
               f"moto's answers to the identity replays: {[c.status for c in replays]}")
        out(f"  moto STS: {len(replays)} signed GetCallerIdentity replay(s) (to {STS_HOST}), each "
            f"verified (200): each sidecar checking its own task's token, the gateway checking "
            f"the sidecars' tokens")

    def print_summary(self) -> None:
        heading("Decisions")
        out(f"  {'#':<2} {'who':<7} {'request':<30} {'outcome':<18} why")
        for number, who, what, outcome, why in self.summary:
            out(f"  {number:<2} {who:<7} {what:<30} {outcome:<18} {why}")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="intentgate-demo-"))
    finalizers = Finalizers()
    demo = Demo(run_dir, finalizers)
    status = 1
    try:
        demo.start()
        demo.task_a_reads()
        demo.task_b_reads()
        demo.task_a_writes()
        demo.task_b_uses_a_session()
        demo.upstream()
        demo.print_summary()
        status = 0
    except KeyboardInterrupt:
        out()
        out(red("demo: interrupted"))
        status = 130
    except (DemoFailure, AssertionError, RuntimeError) as e:
        fail(demo, str(e))
    except Exception as e:  # noqa: BLE001 - one clear line, no stack trace
        fail(demo, f"{type(e).__name__}: {e}")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out(dim("Stopping the sidecars, the gateway, the mock, moto and the fake endpoints."))
        finalizers.run()
        stop_children()
        if os.environ.get("INTENTGATE_DEMO_KEEP"):
            out(f"kept the run folder (configs, policies, audit files, logs): {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    if status == 0:
        out()
        out(green(f"demo: all {len(demo.summary)} requests were decided as expected, each with "
                  f"an audit record in its sidecar and in the gateway; everything stopped "
                  f"({time.monotonic() - started:.1f}s)"))
    return status


def stop_children() -> None:
    """Stops any intentgate process of ours the finalizers do not know of (one interrupted
    while starting, before the harness returned it): our own children, by pid."""
    me = str(os.getpid())
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:
            children.append(int(stat.parent.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while children and time.monotonic() < deadline:
            children = [pid for pid in children if not _reaped(pid)]
            time.sleep(0.05)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def fail(demo: Demo, message: str) -> None:
    lines = message.strip().splitlines() or ["(no message)"]
    out()
    out(red(f"demo: FAILED: {lines[0]}"))
    for line in lines[1:12]:
        out(f"  {line}")
    if demo.deployed is not None:
        processes = [("gateway", demo.deployed.gateway)] + [
            (f"sidecar {role}", p) for role, p in demo.deployed.sidecars.items()]
        for name, process in processes:
            log = ANSI.sub("", process.log_tail()).splitlines()[-8:]
            if log:
                out(dim(f"  -- last lines of the {name} log --"))
                for line in log:
                    out(dim(f"  {line}"))


if __name__ == "__main__":
    sys.exit(main())
