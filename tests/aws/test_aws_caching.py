"""Identity caching: 10,000 requests from 100 distinct valid tokens (100 ECS tasks of TaskRoleA,
sessions task-000..task-099, 100 requests each) cost at most 100 STS calls.

Measured three ways: intentgate's admin /metrics (`intentgate_plugin_outbound_requests_total`
for plugin aws, `intentgate_identity_lookups_total` hit/miss for provider aws) and moto's own
request recorder. Runs on its own intentgate process, so no other test's traffic is counted
and its 10,000 audit records do not slow the other tests' audit reads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait

import grpc
import pytest

import awsdeploy
import awstoken
import wire
from awsdeploy import ORDERS, READER_ROLE
from awsharness import AwsGateway
from mockspanner import SELECT_1

TASKS = 100
REQUESTS_PER_TASK = 100
WORKERS = 16  # concurrent calls in flight
DEADLINE_S = 120.0  # for all 10,000 calls together


@pytest.fixture(scope="module")
def load_gateway(sts, start_gateway) -> AwsGateway:
    """Same config as `gateway`, its own process (own metrics, own audit file)."""
    return start_gateway("gateway-load",
                         awsdeploy.AwsSettings(sts_endpoint=sts.url, grants=(sts.url,)))


@pytest.mark.timeout(180)
def test_10000_requests_from_100_tokens_cost_at_most_100_sts_calls(load_gateway, sts, mock,
                                                                    aws_credentials):
    gateway = load_gateway
    tokens = [
        awstoken.mint(aws_credentials("TaskRoleA", f"task-{i:03d}")).json()
        for i in range(TASKS)
    ]
    # The session every call uses, created (and bound to orders_reader) by another task.
    created = wire.create_session(gateway.channel,
                                  awstoken.mint(aws_credentials("TaskRoleA", "task-setup")).json(),
                                  ORDERS)
    session = wire.session_name(created)
    assert mock.servicer.sessions[session].creator_role == READER_ROLE
    request_bytes = wire.execute_sql(session, SELECT_1)
    call = gateway.channel.unary_unary(f"{wire.SPANNER}/ExecuteSql", request_serializer=None,
                                       response_deserializer=None)

    before = gateway.sts_counters()
    sts_mark = sts.mark()
    mock.reset()
    codes: Counter = Counter()
    lock = threading.Lock()

    def one(token: str) -> None:
        try:
            call(request_bytes, metadata=(("authorization", f"Bearer {token}"),), timeout=20)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        with lock:
            codes[code] += 1

    # Round-robin over the tasks: every task's first call comes in the first 100, then each
    # task keeps calling while the others do, as 100 busy tasks sharing one proxy would.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(one, tokens[i % TASKS])
                   for i in range(TASKS * REQUESTS_PER_TASK)]
        done, pending = wait(futures, timeout=DEADLINE_S)
        for f in pending:
            f.cancel()
    elapsed = time.monotonic() - started
    assert not pending, f"{len(pending)} calls did not finish within {DEADLINE_S}s"
    for f in done:
        f.result()

    after = gateway.sts_counters()
    replays = sts.caller_identity_calls(sts_mark)
    sts_calls = after.outbound - before.outbound
    misses, hits = after.misses - before.misses, after.hits - before.hits
    print(
        f"\nidentity caching: {TASKS * REQUESTS_PER_TASK} ExecuteSql calls from {TASKS} tokens "
        f"({WORKERS} in flight) in {elapsed:.1f}s: "
        f"STS calls (intentgate_plugin_outbound_requests_total, plugin aws) = {sts_calls}, "
        f"GetCallerIdentity received by moto = {len(replays)}, "
        f"identity lookups miss = {misses}, hit = {hits}; result codes {dict(codes)}"
    )
    assert codes == Counter({grpc.StatusCode.OK: TASKS * REQUESTS_PER_TASK}), codes
    assert len(mock.requests) == TASKS * REQUESTS_PER_TASK
    assert misses + hits == TASKS * REQUESTS_PER_TASK, (misses, hits)
    assert sts_calls == len(replays), "intentgate's count and moto's disagree"
    assert all(c.status == 200 for c in replays), replays
    assert sts_calls <= TASKS, f"{sts_calls} STS calls for {TASKS} tokens"
    # Every token was verified once: distinct access keys reached STS, none twice.
    keys = Counter(c.access_key_id for c in replays)
    assert len(keys) == TASKS and max(keys.values()) == 1, keys.most_common(3)



BURSTS = 5  # new tokens, each sent on WORKERS calls at once


def test_concurrent_first_calls_of_one_token_cost_one_sts_call(load_gateway, sts, mock,
                                                               aws_credentials):
    """A task that starts with a burst (a session pool warming up, parallel queries) sends its
    new token on several calls at once. The identity cache should verify it once, not once per
    call in flight: otherwise 100 tasks starting together cost far more than 100 STS calls
    (and STS throttles GetCallerIdentity per account)."""
    gateway = load_gateway
    created = wire.create_session(gateway.channel,
                                  awstoken.mint(aws_credentials("TaskRoleA", "task-setup")).json(),
                                  ORDERS)
    request_bytes = wire.execute_sql(wire.session_name(created), SELECT_1)
    per_token = []
    codes = []
    for n in range(BURSTS):
        token = awstoken.mint(aws_credentials("TaskRoleA", f"task-burst-{n}")).json()
        before = gateway.sts_counters()
        sts_mark = sts.mark()
        barrier = threading.Barrier(WORKERS, timeout=10)

        def one(_: int, token: str = token, barrier: threading.Barrier = barrier):
            barrier.wait()
            return wire.unary(gateway.channel, "ExecuteSql", request_bytes, token).code

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            codes += list(pool.map(one, range(WORKERS), timeout=60))
        after = gateway.sts_counters()
        replays = len(sts.caller_identity_calls(sts_mark))
        assert after.outbound - before.outbound == replays
        per_token.append(replays)

    print(f"\n{BURSTS} new tokens, each on {WORKERS} simultaneous calls: STS calls per token "
          f"{per_token} (total {sum(per_token)})")
    assert codes == [grpc.StatusCode.OK] * (BURSTS * WORKERS), Counter(codes)
    assert per_token == [1] * BURSTS, (
        f"STS calls per token used by {WORKERS} calls at once: {per_token}; the identity cache "
        f"does not coalesce concurrent verifications of the same credential"
    )
