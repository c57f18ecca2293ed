"""The mission end to end (issue 4 item 8).

    app (official Python client, emulator mode: AnonymousCredentials, api_endpoint = sidecar)
      │ h2c, no credential
      ▼
    sidecar (intentgate, 127.0.0.1): credential.ambient_aws = the task's own token, minted from
      │ the ECS container-credentials endpoint (a fake serving moto's TaskRoleA credentials),
      │ verified by its own aws-iam plugin against moto; permissive policy for its task role;
      │ upstream_credential.aws_token = a fresh task token for the gateway's audience
      │ TLS (test CA), authorization: Bearer <task token>
      ▼
    gateway (intentgate): aws-iam identity (gateway audience, moto), the real policies
      │ (@database_role("orders_reader") for TaskRoleA, nothing for TaskRoleB);
      │ upstream_credential.google_from_aws: federation from the gateway task's own role
      │ (a second fake ECS endpoint) through a fake Google STS that checks the signature
      ▼
    Google's mock Spanner (metadata recorder)
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.spanner_v1 import Client
from google.cloud.spanner_v1.types import spanner

import awsdeploy
import mission
from awsdeploy import ORDERS, PERMIT_ID, READER_ROLE, principal
from checks import method
from mockspanner import SELECT_1, UPDATE_ORDERS
from processes import free_port
from stsdouble import ACCOUNT
import wire  # noqa: I001 - tests/spanner's raw gRPC helpers

# ECS task ids: the session names the ECS agent assumes task roles with.
TASK_A = "5e1c0d2a9b8f4c7e8a6d3f2b1c0e9d8a"
TASK_B = "0a9b8c7d6e5f40312233445566778899"
GATEWAY_TASK = "c0ffee00c0ffee00c0ffee00c0ffee00"

SIDECAR_PERMIT = "sidecar-own-task"

KNOWN_TASKS = "only-known-ecs-tasks"


def sidecar_policies(role: str, task: str) -> str:
    """A sidecar's policy: its own task (role and task id), anything on orders, as
    orders_reader. The gateway is where the real decision is made."""
    return f"""\
@id("{SIDECAR_PERMIT}")
@database_role("{READER_ROLE}")
permit (principal == {principal(role)}, action, resource)
when {{ principal.session_name == "{task}" && principal in Aws::Account::"{ACCOUNT}" }};
"""


def gateway_policies() -> str:
    """The suite's policies (TaskRoleA reads orders as orders_reader; TaskRoleB has nothing),
    plus a forbid naming the ECS task ids, so an allow proves the task id reached Cedar."""
    return awsdeploy.policies() + f"""
@id("{KNOWN_TASKS}")
forbid (principal is Aws::Role, action, resource)
unless {{ principal.session_name == "{TASK_A}" || principal.session_name == "{TASK_B}" }};
"""


class Mission:
    """Every piece of the mission, started once for the module."""

    def __init__(self, request, tmp, sts, mock, pki, aws_credentials):
        self.sts = sts
        self.creds = {
            "TaskRoleA": aws_credentials("TaskRoleA", TASK_A),
            "TaskRoleB": aws_credentials("TaskRoleB", TASK_B),
            "IntentgateGateway": aws_credentials("IntentgateGateway", GATEWAY_TASK),
        }
        self.ecs = {}
        for role, credentials in self.creds.items():
            endpoint = mission.FakeEcsCredentials(
                credentials, f"arn:aws:iam::{ACCOUNT}:role/ecs-tasks/{role}")
            request.addfinalizer(endpoint.stop)
            self.ecs[role] = endpoint
        gw = self.creds["IntentgateGateway"]
        self.google_sts = mission.FakeGoogleSts(mission.WIF_AUDIENCE, {gw.access_key: gw})
        request.addfinalizer(self.google_sts.stop)

        # --- the gateway ------------------------------------------------------------------
        gw_policies = tmp / "gateway-policies"
        gw_policies.mkdir()
        (gw_policies / "orders.cedar").write_text(gateway_policies())
        port, admin = free_port(), free_port()
        folder = tmp / "gateway"
        federated = mission.google_from_aws_line(self.google_sts.token_url)
        config, audit = mission.write_gateway_config(
            folder, sts_url=sts.url, upstream_url=mock.url, credential_line=federated,
            port=port, admin_port=admin, policies_dir=gw_policies, tls=pki)
        ok, output = mission.check_config(config)
        assert ok, f"intentgate check refused the gateway config:\n{output}"
        env = mission.task_environment(self.ecs["IntentgateGateway"].url)
        self.gateway = mission.start("mission-gateway", config, audit, port, admin, env)
        request.addfinalizer(self.gateway.stop)

        # --- one sidecar per task ---------------------------------------------------------
        self.sidecars = {}
        for role, task in (("TaskRoleA", TASK_A), ("TaskRoleB", TASK_B)):
            policies = tmp / f"sidecar-{role}-policies"
            policies.mkdir()
            (policies / "sidecar.cedar").write_text(sidecar_policies(role, task))
            s_port, s_admin = free_port(), free_port()
            s_config, s_audit = mission.write_sidecar_config(
                tmp / f"sidecar-{role}", sts_url=sts.url, gateway_port=port, ca=pki.ca_cert,
                port=s_port, admin_port=s_admin, policies_dir=policies)
            ok, output = mission.check_config(s_config)
            assert ok, output
            sidecar = mission.start(f"mission-sidecar-{role}", s_config, s_audit, s_port,
                                    s_admin, mission.task_environment(self.ecs[role].url))
            request.addfinalizer(sidecar.stop)
            self.sidecars[role] = sidecar

    def aws_secrets(self) -> list[str]:
        """What must never reach Google: any part of an AWS token or credential."""
        out = ["AWS4-HMAC-SHA256", "x-intentgate-audience", "GetCallerIdentity",
               mission.GATEWAY_AUDIENCE, mission.SIDECAR_AUDIENCE]
        for c in self.creds.values():
            out += [c.access_key, c.secret_key, c.token]
        return out


@pytest.fixture(scope="module")
def deployed(request, tmp_path_factory, sts, mock, pki, aws_credentials):
    return Mission(request, tmp_path_factory.mktemp("mission"), sts, mock, pki, aws_credentials)


@pytest.fixture
def app(request):
    """The app's official client in emulator mode (what SPANNER_EMULATOR_HOST does):
    AnonymousCredentials, plaintext, api_endpoint = its sidecar."""
    opened = []

    def open_(target: str):
        client = Client(project="p", credentials=AnonymousCredentials(),
                        client_options=ClientOptions(api_endpoint=target),
                        disable_builtin_metrics=True)
        db = client.instance("i").database("orders")
        opened.append(db)
        return db

    yield open_
    for db in opened:
        try:
            db.close()
        except Exception:  # noqa: BLE001
            pass


def assert_nothing_of_aws_upstream(mock, deployed: Mission) -> None:
    """Every upstream call carried the gateway's Google token, and no part of any AWS token."""
    calls = mock.recorder.calls
    assert calls, "the mock saw no call"
    secrets = deployed.aws_secrets()
    for call in calls:
        assert call.metadata.get("authorization") == f"Bearer {mission.FEDERATED_TOKEN}", (
            call.method, call.metadata.get("authorization", "")[:80])
        text = json.dumps(call.metadata)
        leaked = [s[:24] for s in secrets if s in text]
        assert not leaked, f"{call.method} carried AWS material upstream: {leaked}"


def assert_federated(deployed: Mission) -> None:
    """The gateway's Google token came from federating its own task role: every exchange the
    fake Google STS saw was valid (form, target resource, signature by the gateway role's key),
    and the key came from the gateway's own ECS credentials endpoint."""
    exchanges = deployed.google_sts.snapshot()
    assert exchanges, "the gateway never exchanged a token"
    assert all(not e.refused for e in exchanges), [e.refused for e in exchanges]
    gw_key = deployed.creds["IntentgateGateway"].access_key
    assert {e.access_key_id for e in exchanges} == {gw_key}
    assert all(mission.TARGET_RESOURCE_HEADER in e.signed_headers for e in exchanges)
    assert deployed.ecs["IntentgateGateway"].requests, "gateway never asked its ECS endpoint"


def test_task_a_reads_orders_through_its_sidecar_and_the_gateway(deployed, mock, app):
    sidecar, gateway = deployed.sidecars["TaskRoleA"], deployed.gateway
    s_mark, g_mark = sidecar.audit.mark(), gateway.audit.mark()

    db = app(sidecar.target)
    with db.snapshot() as snapshot:
        rows = list(snapshot.execute_sql(SELECT_1))
    assert rows == [[1]]

    # Upstream: the session runs as orders_reader, with the gateway's Google credential only.
    assert [s.creator_role for s in mock.created_sessions(ORDERS)] == [READER_ROLE]
    assert mock.requests_of(spanner.ExecuteSqlRequest), "the query never reached upstream"
    assert_nothing_of_aws_upstream(mock, deployed)

    # Sidecar hop: the app sent nothing; the task's own identity stood in.
    s_records = sidecar.audit.wait_for("sidecar allows", lambda r: r["decision"] == "allow",
                                       s_mark, count=2)
    for r in s_records:
        assert r["principal"] == principal("TaskRoleA"), r
        assert r["ambient_credential"] is True, r
        assert r["trust_anchor"] == ACCOUNT, r
        assert r["policies"] == [SIDECAR_PERMIT], r  # its when clause names TASK_A
        assert r["grpc_status"] == 0, r
    # Gateway hop: the sidecar's task token, the real policy.
    g_records = gateway.audit.wait_for("gateway allows", lambda r: r["decision"] == "allow",
                                       g_mark, count=len(s_records))
    for r in g_records:
        assert r["principal"] == principal("TaskRoleA"), r
        assert not r.get("ambient_credential"), r  # written only when true
        assert r["policies"] == [PERMIT_ID], r  # KNOWN_TASKS did not forbid: TASK_A reached Cedar
        assert r["grpc_status"] == 0, r
    create = [r for r in g_records if r["method"] == method("CreateSession")]
    assert [r["binding"] for r in create] == [f"database_role={READER_ROLE}"], g_records

    # One gateway record per sidecar record, same RPCs in the same order.
    s_all, g_all = sidecar.audit.since(s_mark), gateway.audit.since(g_mark)
    assert [r["method"] for r in s_all] == [r["method"] for r in g_all], (s_all, g_all)
    # What the mock saw as x-request-id is the gateway's request ID of that call.
    g_ids = {r["request_id"] for r in g_all}
    upstream_ids = [c.metadata.get("x-request-id") for c in mock.recorder.calls]
    assert upstream_ids and set(upstream_ids) <= g_ids, (upstream_ids, g_ids)
    print("\nsidecar A:", *[json.dumps(r) for r in s_all], sep="\n  ")
    print("gateway:", *[json.dumps(r) for r in g_all], sep="\n  ")

    assert_federated(deployed)
    assert deployed.ecs["TaskRoleA"].requests, "sidecar A never asked its ECS endpoint"


def test_task_b_is_permission_denied_at_the_gateway(deployed, mock, app):
    sidecar, gateway = deployed.sidecars["TaskRoleB"], deployed.gateway
    s_mark, g_mark = sidecar.audit.mark(), gateway.audit.mark()

    db = app(sidecar.target)
    with pytest.raises(exceptions.PermissionDenied) as denied:
        with db.snapshot() as snapshot:
            list(snapshot.execute_sql(SELECT_1))

    g_deny = gateway.audit.wait_for("gateway deny", lambda r: r["decision"] == "deny", g_mark)[0]
    assert g_deny["principal"] == principal("TaskRoleB"), g_deny
    assert g_deny["method"] == method("CreateSession"), g_deny
    assert g_deny["policies"] == [], g_deny
    # The client's error carries the gateway's request ID (the sidecar relays the status).
    assert g_deny["request_id"] in str(denied.value), (str(denied.value), g_deny)
    # The sidecar let its own task through and recorded the gateway's answer.
    s_rec = sidecar.audit.wait_for("sidecar record", lambda r: True, s_mark)[0]
    assert s_rec["principal"] == principal("TaskRoleB") and s_rec["ambient_credential"], s_rec
    assert s_rec["decision"] == "allow" and s_rec["policies"] == [SIDECAR_PERMIT], s_rec
    assert s_rec["grpc_status"] == 7, s_rec
    assert mock.requests == [] and mock.recorder.calls == [], "a denied call reached Spanner"
    print("\nsidecar B:", json.dumps(s_rec), "gateway:", json.dumps(g_deny), sep="\n  ")


def test_task_a_cannot_write(deployed, mock, app):
    sidecar, gateway = deployed.sidecars["TaskRoleA"], deployed.gateway
    s_mark, g_mark = sidecar.audit.mark(), gateway.audit.mark()

    db = app(sidecar.target)
    with pytest.raises(exceptions.PermissionDenied) as denied:
        db.run_in_transaction(lambda tx: tx.execute_update(UPDATE_ORDERS))

    g_deny = gateway.audit.wait_for("gateway deny", lambda r: r["decision"] == "deny", g_mark)[0]
    assert g_deny["principal"] == principal("TaskRoleA"), g_deny
    assert g_deny["action"] == 'Spanner::Action::"write"', g_deny
    assert g_deny["request_id"] in str(denied.value), (str(denied.value), g_deny)
    s_deny = sidecar.audit.wait_for("sidecar record of the write",
                                    lambda r: r.get("action") == 'Spanner::Action::"write"',
                                    s_mark)[0]
    assert s_deny["decision"] == "allow" and s_deny["grpc_status"] == 7, s_deny
    assert s_deny["principal"] == principal("TaskRoleA"), s_deny
    dml = [r for r in mock.requests_of(spanner.ExecuteSqlRequest) if r.sql == UPDATE_ORDERS]
    assert dml == [] and not mock.requests_of(spanner.CommitRequest), "the write reached Spanner"
    print("\nsidecar A (write):", json.dumps(s_deny), "gateway:", json.dumps(g_deny), sep="\n  ")


def upstream_session(mock) -> str:
    """A session that exists upstream with creator_role orders_reader, made straight at the mock
    (as if another replica had created it)."""
    direct = grpc.insecure_channel(mock.url.removeprefix("http://"))
    try:
        return wire.session_name(wire.create_session(direct, None, ORDERS, READER_ROLE))
    finally:
        direct.close()


def test_a_session_made_upstream_is_queried_through_both_hops(deployed, mock):
    """The credential chain without the app's CreateSession: task A queries a session that
    exists upstream through its sidecar, sending no credential. Each hop learns the session's
    role by a capability lookup (GetSession, sent with that hop's own upstream credential:
    the sidecar's task token to the gateway, the gateway's federated token to Spanner)."""
    session = upstream_session(mock)
    mock.reset()
    sidecar, gateway = deployed.sidecars["TaskRoleA"], deployed.gateway
    s_mark, g_mark = sidecar.audit.mark(), gateway.audit.mark()

    channel = grpc.insecure_channel(sidecar.target)
    try:
        result = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), None)
    finally:
        channel.close()

    assert result.code == grpc.StatusCode.OK, (result.code, result.details)
    assert_nothing_of_aws_upstream(mock, deployed)
    s_rec = sidecar.audit.by_request_id(result.request_id)
    assert s_rec["decision"] == "allow" and s_rec["ambient_credential"], s_rec
    assert s_rec["principal"] == principal("TaskRoleA"), s_rec
    g_recs = gateway.audit.wait_for("gateway allow", lambda r: r["decision"] == "allow", g_mark)
    assert all(r["principal"] == principal("TaskRoleA") for r in g_recs), g_recs
    assert [r["method"] for r in g_recs] == [method("GetSession"), method("ExecuteSql")], g_recs
    assert s_rec["capability_lookup"] is True and g_recs[0]["capability_lookup"] is True
    assert_federated(deployed)
    assert deployed.ecs["TaskRoleA"].requests, "sidecar A never asked its ECS endpoint"
    print("\nsidecar A:", *[json.dumps(r) for r in sidecar.audit.since(s_mark)], sep="\n  ")
    print("gateway:", *[json.dumps(r) for r in gateway.audit.since(g_mark)], sep="\n  ")



def test_task_b_cannot_use_a_session_of_task_a(deployed, mock):
    """Task B names a session bound to orders_reader through its sidecar: the sidecar's lookup
    (GetSession at the gateway, as task B) is refused by the gateway's policy, so B must get
    PERMISSION_DENIED, and nothing reaches Spanner."""
    session = upstream_session(mock)
    mock.reset()
    sidecar_b, gateway = deployed.sidecars["TaskRoleB"], deployed.gateway
    b_mark, g_mark = sidecar_b.audit.mark(), gateway.audit.mark()
    channel = grpc.insecure_channel(sidecar_b.target)
    try:
        denied = wire.unary(channel, "ExecuteSql", wire.execute_sql(session, SELECT_1), None)
    finally:
        channel.close()
    print("\nsidecar B:", *[json.dumps(r) for r in sidecar_b.audit.since(b_mark)], sep="\n  ")
    print("gateway:", *[json.dumps(r) for r in gateway.audit.since(g_mark)], sep="\n  ")
    assert not mock.requests_of(spanner.ExecuteSqlRequest), "task B's query reached Spanner"
    g_deny = gateway.audit.wait_for("gateway deny", lambda r: r["decision"] == "deny", g_mark)[0]
    assert g_deny["principal"] == principal("TaskRoleB"), g_deny
    assert g_deny["method"] == method("GetSession"), g_deny
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED, (denied.code, denied.details)
