//! The gRPC listener's transport behaviour, end to end: the real `intentgate` binary with the
//! OIDC identity plugin (a real issuer) and the Spanner connector, in front of a scripted h2c
//! upstream (`intentgate_tests::grpc::ScriptedUpstream`) that injects the faults: transient
//! statuses, ABORTED with details, hangs, floods, a closed port, sessions it never created.
//!
//! Every assertion is on what was observed: what the upstream received (attempts, metadata,
//! bytes, timings), what the caller received, and the audit records.
//!
//! Needs `scripts/ensure-peers` (the OIDC issuer) and `scripts/build-plugins`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed step should stop the test loudly"
)]

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use base64::Engine as _;
use bytes::Bytes;
use intentgate_tests::gateway::Gateway;
use intentgate_tests::grpc::{
    AUDIENCE, GrpcClient, GrpcGateway, GrpcReply, Reply, SUBJECT, ScriptedUpstream, UPSTREAM_TOKEN,
    code, proto, read_reply, spanner, wire,
};
use intentgate_tests::{OidcIssuer, TokenKind};
use serde_json::Value;

/// The listener's `max_message_bytes` in these tests.
const MAX_MESSAGE: usize = 1024;
/// Every test ends within this (generous: starting a gateway runs `cargo build`, which waits
/// for any concurrent build of the workspace).
const TEST_TIMEOUT: Duration = Duration::from_secs(600);

async fn bounded(test: impl Future<Output = Result<()>>) -> Result<()> {
    intentgate_tests::bounded(TEST_TIMEOUT, test).await
}

struct Setup {
    issuer: OidcIssuer,
    upstream: ScriptedUpstream,
    gw: GrpcGateway,
    client: GrpcClient,
    token: String,
    /// A session created through intentgate (so it is bound to `app_role`).
    session: String,
}

async fn setup() -> Result<Setup> {
    let issuer = OidcIssuer::start().await?;
    let upstream = ScriptedUpstream::start().await?;
    setup_with(issuer, upstream).await
}

async fn setup_with(issuer: OidcIssuer, upstream: ScriptedUpstream) -> Result<Setup> {
    let gw = GrpcGateway::start(
        issuer.url(),
        &upstream.url(),
        &format!("max_message_bytes = {MAX_MESSAGE}"),
    )
    .await?;
    let client = GrpcClient::connect(&gw.url).await?;
    let token = issuer.mint_for(TokenKind::Valid, SUBJECT, AUDIENCE).await?;
    let session = create_session(&client, &token).await?;
    Ok(Setup {
        issuer,
        upstream,
        gw,
        client,
        token,
        session,
    })
}

/// CreateSession through intentgate; the new session's name.
async fn create_session(client: &GrpcClient, token: &str) -> Result<String> {
    let reply = client
        .unary(
            "CreateSession",
            Some(token),
            &spanner::create_session(spanner::DATABASE),
            &[],
        )
        .await?;
    ensure!(
        reply.code() == Some(code::OK),
        "CreateSession: {:?} {}",
        reply.code(),
        reply.message()
    );
    let message = reply
        .messages
        .first()
        .ok_or_else(|| anyhow!("CreateSession answered no message"))?;
    let name = proto::last_bytes(message, 1)?.ok_or_else(|| anyhow!("Session without a name"))?;
    Ok(String::from_utf8(name.to_vec())?)
}

impl Setup {
    async fn unary(&self, rpc: &str, message: &[u8]) -> Result<GrpcReply> {
        self.client
            .unary(rpc, Some(&self.token), message, &[])
            .await
    }

    async fn audit(&self, reply: &GrpcReply) -> Result<Value> {
        let id = reply
            .request_id()
            .ok_or_else(|| anyhow!("no x-request-id in {:?}", reply.headers))?;
        self.gw.gateway.audit_for(id).await
    }
}

/// The audit records matching `wanted`, waiting up to 5 s for the first.
async fn records_where(gateway: &Gateway, wanted: impl Fn(&Value) -> bool) -> Result<Vec<Value>> {
    let started = std::time::Instant::now();
    loop {
        let found: Vec<Value> = gateway
            .audit_records()?
            .into_iter()
            .filter(|r| wanted(r))
            .collect();
        if !found.is_empty() || started.elapsed() > Duration::from_secs(5) {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn retries(record: &Value) -> u64 {
    record["retries"].as_u64().unwrap_or(0)
}

fn errors(record: &Value) -> Vec<String> {
    record["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The smallest total wait before attempt `n` (1-based) under the listener's documented backoff:
/// 250 ms ×1.3 per attempt, each wait jittered to between half and all of it.
fn min_wait_before_attempt(n: u32) -> Duration {
    (1..n)
        .map(|i| Duration::from_millis(250).mul_f64(1.3f64.powi(i as i32 - 1)) / 2)
        .sum()
}

// 1 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unavailable_twice_then_ok_is_retried_by_the_listener() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let unavailable = Reply::status(code::UNAVAILABLE, "try again");
        s.upstream.script(
            "ExecuteSql",
            vec![unavailable.clone(), unavailable],
            Reply::Message(b"result-set-bytes".to_vec()),
        );
        let request = spanner::execute_sql(&s.session, "SELECT 1");

        let reply = s.unary("ExecuteSql", &request).await?;

        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(
            reply.messages,
            vec![Bytes::from_static(b"result-set-bytes")]
        );
        let attempts = s.upstream.requests_to("ExecuteSql");
        assert_eq!(
            attempts.len(),
            3,
            "upstream saw {} attempts",
            attempts.len()
        );
        let id = reply.request_id().unwrap();
        for a in &attempts {
            assert_eq!(
                a.body,
                wire::frame(&request),
                "every attempt carries the same bytes"
            );
            assert_eq!(a.header("x-request-id"), Some(id));
        }
        // Waited between attempts as the backoff says (at least half of 250 ms, then of 325 ms).
        let gap1 = attempts[1].at - attempts[0].at;
        let gap2 = attempts[2].at - attempts[1].at;
        assert!(gap1 >= Duration::from_millis(120), "first backoff {gap1:?}");
        assert!(
            gap2 >= Duration::from_millis(155),
            "second backoff {gap2:?}"
        );
        assert!(gap1 < Duration::from_secs(3) && gap2 < Duration::from_secs(3));

        let record = s.audit(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(retries(&record), 2, "{record}");
        assert_eq!(record["grpc_status"], 0, "{record}");
        assert_eq!(record["replay_safe"], true, "{record}");
        assert_eq!(record["method"], spanner::path("ExecuteSql"));
        let errors = errors(&record);
        assert_eq!(errors.len(), 2, "one error per failed attempt: {errors:?}");
        assert!(
            errors.iter().all(|e| e.contains("grpc-status 14")),
            "{errors:?}"
        );
        Ok(())
    })
    .await
}

// 2 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_exhausted_is_retried_and_a_retried_create_session_is_still_learned() -> Result<()>
{
    bounded(async {
        let s = setup().await?;
        s.upstream.script(
            "ExecuteSql",
            vec![Reply::status(code::RESOURCE_EXHAUSTED, "quota")],
            Reply::Message(b"rows".to_vec()),
        );
        let reply = s
            .unary("ExecuteSql", &spanner::execute_sql(&s.session, "SELECT 1"))
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(reply.messages, vec![Bytes::from_static(b"rows")]);
        assert_eq!(s.upstream.requests_to("ExecuteSql").len(), 2);
        let record = s.audit(&reply).await?;
        assert_eq!(retries(&record), 1, "{record}");
        assert_eq!(record["grpc_status"], 0, "{record}");

        // CreateSession (read whole, to learn the session) retried once: the answer of the
        // attempt that succeeded is what the caller gets and what binds the session.
        s.upstream.script(
            "CreateSession",
            vec![Reply::status(code::UNAVAILABLE, "try again")],
            Reply::Spanner,
        );
        let before = s.upstream.requests_to("CreateSession").len();
        let session = create_session(&s.client, &s.token).await?;
        assert_eq!(s.upstream.requests_to("CreateSession").len(), before + 2);
        assert_ne!(session, s.session);
        let reply = s
            .unary("ExecuteSql", &spanner::execute_sql(&session, "SELECT 1"))
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert!(
            s.upstream.requests_to("GetSession").is_empty(),
            "the session made by a retried CreateSession was not learned"
        );
        let record = s.audit(&reply).await?;
        assert_eq!(record["binding"], "database_role=app_role", "{record}");
        assert_ne!(record["capability_lookup"], true, "{record}");
        Ok(())
    })
    .await
}

// 3 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_that_are_not_replay_safe_are_sent_once() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let unavailable = Reply::status(code::UNAVAILABLE, "try again");

        // A streaming call: only the client can resume it.
        s.upstream
            .script("ExecuteStreamingSql", vec![], unavailable.clone());
        let reply = s
            .unary(
                "ExecuteStreamingSql",
                &spanner::execute_sql(&s.session, "SELECT 1"),
            )
            .await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE), "{}", reply.message());
        assert_eq!(
            reply.message(),
            "try again",
            "upstream's status passes through"
        );
        assert_eq!(s.upstream.requests_to("ExecuteStreamingSql").len(), 1);
        let record = s.audit(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(retries(&record), 0, "{record}");
        assert_ne!(record["replay_safe"], true, "{record}");
        assert_eq!(record["grpc_status"], code::UNAVAILABLE, "{record}");

        // A single-use Commit: its mutations could apply twice.
        s.upstream
            .script("Commit", vec![unavailable.clone()], Reply::Spanner);
        let reply = s
            .unary("Commit", &spanner::commit_single_use(&s.session))
            .await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("Commit").len(), 1);
        let record = s.audit(&reply).await?;
        assert_eq!(retries(&record), 0, "{record}");
        assert_ne!(record["replay_safe"], true, "{record}");

        // The same status on a Commit of an existing transaction (replay-protected by its id)
        // is retried: the classification is what decides.
        s.upstream
            .script("Commit", vec![unavailable], Reply::Spanner);
        let reply = s
            .unary("Commit", &spanner::commit_transaction(&s.session, b"tx-1"))
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("Commit").len(), 3);
        let record = s.audit(&reply).await?;
        assert_eq!(retries(&record), 1, "{record}");
        assert_eq!(record["replay_safe"], true, "{record}");
        Ok(())
    })
    .await
}

// 4 ----------------------------------------------------------------------------------------

/// A `google.rpc.Status { code: 10, message, details: [Any { type_url, value }] }`, with bytes
/// that are not UTF-8 in the value so any re-encoding would show.
fn aborted_details() -> Vec<u8> {
    let mut any = proto::bytes_field(1, b"type.googleapis.com/google.rpc.RetryInfo");
    proto::put_bytes(
        &mut any,
        2,
        &[0x0a, 0x04, 0x10, 0x80, 0xb5, 0x18, 0xff, 0x00],
    );
    let mut status = vec![0x08, 0x0a];
    proto::put_bytes(&mut status, 2, b"Transaction was aborted.");
    proto::put_bytes(&mut status, 3, &any);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborted_passes_through_once_with_its_details() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let details = aborted_details();
        s.upstream.script(
            "Commit",
            vec![],
            Reply::Status {
                code: code::ABORTED,
                message: "Transaction was aborted.".into(),
                details: Some(details.clone()),
            },
        );
        let reply = s
            .unary("Commit", &spanner::commit_transaction(&s.session, b"tx-7"))
            .await?;
        assert_eq!(reply.code(), Some(code::ABORTED), "{}", reply.message());
        assert_eq!(reply.message(), "Transaction was aborted.");
        let got = reply
            .metadata("grpc-status-details-bin")
            .expect("grpc-status-details-bin reached the caller");
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(got.as_bytes().strip_suffix(b"==").unwrap_or(got.as_bytes()))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(got.as_bytes()))?;
        assert_eq!(decoded, details, "the details bytes changed on the way");
        assert_eq!(
            s.upstream.requests_to("Commit").len(),
            1,
            "ABORTED was retried"
        );
        let record = s.audit(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["grpc_status"], code::ABORTED, "{record}");
        assert_eq!(retries(&record), 0, "{record}");
        Ok(())
    })
    .await
}

/// Upstream's own error, passed through trailers-only, is the caller's complete answer: the
/// audit record must not claim the caller's stream ended early.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passed_through_trailers_only_error_is_audited_without_a_stream_error() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        s.upstream.script(
            "Commit",
            vec![],
            Reply::status(code::ABORTED, "Transaction was aborted."),
        );
        let reply = s
            .unary("Commit", &spanner::commit_transaction(&s.session, b"tx-8"))
            .await?;
        assert_eq!(reply.code(), Some(code::ABORTED), "{}", reply.message());
        let record = s.audit(&reply).await?;
        assert_eq!(record["grpc_status"], code::ABORTED, "{record}");
        assert!(errors(&record).is_empty(), "spurious errors: {record}");
        Ok(())
    })
    .await
}

// 5 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_callers_deadline_bounds_every_attempt() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let request = spanner::execute_sql(&s.session, "SELECT 1");

        // What is left of the caller's deadline goes upstream.
        let reply = s
            .client
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &request,
                &[("grpc-timeout", "2S")],
            )
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        let seen = s.upstream.requests_to("ExecuteSql");
        let timeout = seen[0].grpc_timeout().expect("upstream got a grpc-timeout");
        assert!(
            timeout <= Duration::from_secs(2) && timeout > Duration::from_secs(1),
            "upstream got grpc-timeout {:?} = {timeout:?}",
            seen[0].header("grpc-timeout")
        );

        // Always UNAVAILABLE: retries stop when the next wait would pass the deadline.
        s.upstream.script(
            "ExecuteSql",
            vec![],
            Reply::status(code::UNAVAILABLE, "still down"),
        );
        let before = s.upstream.requests_to("ExecuteSql").len();
        let reply = s
            .client
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &request,
                &[("grpc-timeout", "700m")],
            )
            .await?;
        assert!(
            matches!(
                reply.code(),
                Some(code::UNAVAILABLE | code::DEADLINE_EXCEEDED)
            ),
            "{:?} {}",
            reply.code(),
            reply.message()
        );
        assert!(
            reply.elapsed < Duration::from_secs(3),
            "took {:?}",
            reply.elapsed
        );
        let attempts: Vec<_> = s.upstream.requests_to("ExecuteSql").split_off(before);
        // How many attempts can fit in 700 ms at most, with every jittered wait at its minimum.
        let most = (1..=5)
            .filter(|&n| min_wait_before_attempt(n) < Duration::from_millis(700))
            .count();
        assert!(
            !attempts.is_empty() && attempts.len() <= most,
            "{} attempts within a 700 ms deadline (at most {most} fit)",
            attempts.len()
        );
        let mut last = Duration::from_millis(700);
        for a in &attempts {
            let t = a
                .grpc_timeout()
                .expect("every attempt carries grpc-timeout");
            assert!(
                t <= last,
                "attempt grpc-timeouts must shrink: {t:?} after {last:?}"
            );
            last = t;
        }
        let record = s.audit(&reply).await?;
        assert_eq!(retries(&record), attempts.len() as u64 - 1, "{record}");

        // A hanging upstream: DEADLINE_EXCEEDED when the caller's deadline passes, not later.
        s.upstream.script("ExecuteSql", vec![], Reply::Hang);
        let before = s.upstream.requests_to("ExecuteSql").len();
        let reply = s
            .client
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &request,
                &[("grpc-timeout", "500m")],
            )
            .await?;
        assert_eq!(
            reply.code(),
            Some(code::DEADLINE_EXCEEDED),
            "{}",
            reply.message()
        );
        assert!(
            reply.elapsed >= Duration::from_millis(450) && reply.elapsed < Duration::from_secs(3),
            "took {:?}",
            reply.elapsed
        );
        assert_eq!(s.upstream.requests_to("ExecuteSql").len(), before + 1);
        let record = s.audit(&reply).await?;
        assert_eq!(record["grpc_status"], code::DEADLINE_EXCEEDED, "{record}");
        assert!(
            reply.message().contains(reply.request_id().unwrap()),
            "{}",
            reply.message()
        );
        Ok(())
    })
    .await
}

// 6 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_and_bytes_reach_upstream_as_they_should() -> Result<()> {
    bounded(async {
        let s = setup().await?;

        // ExecuteSql with a field no version of the connector knows: forwarded byte for byte.
        let mut request = spanner::execute_sql(&s.session, "SELECT 1");
        proto::put_bytes(&mut request, 99, b"unknown to everyone");
        let reply = s
            .client
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &request,
                &[
                    ("x-goog-api-client", "gl-rust/1.95 gccl/test"),
                    ("google-cloud-resource-prefix", spanner::DATABASE),
                    ("x-request-id", "chosen-by-the-caller"),
                ],
            )
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        let id = reply
            .request_id()
            .expect("x-request-id to the caller")
            .to_string();
        assert_ne!(id, "chosen-by-the-caller");
        let seen = s.upstream.requests_to("ExecuteSql");
        assert_eq!(seen.len(), 1);
        let up = &seen[0];
        assert_eq!(up.body, wire::frame(&request), "the request bytes changed");
        assert_eq!(up.header("x-request-id"), Some(id.as_str()));
        assert_eq!(
            up.header("x-goog-api-client"),
            Some("gl-rust/1.95 gccl/test")
        );
        assert_eq!(
            up.header("google-cloud-resource-prefix"),
            Some(spanner::DATABASE)
        );
        assert_eq!(up.header("content-type"), Some("application/grpc"));
        assert_eq!(up.header("te"), Some("trailers"));
        let auth: Vec<_> = up.headers.get_all("authorization").iter().collect();
        assert_eq!(auth.len(), 1, "{auth:?}");
        assert_eq!(auth[0], format!("Bearer {UPSTREAM_TOKEN}").as_str());
        assert_eq!(up.headers.get_all("x-request-id").iter().count(), 1);
        let record = s.audit(&reply).await?;
        assert_eq!(record["request_id"], id.as_str());

        // CreateSession: the caller's bytes, then the bytes that force the policy's role.
        let creates = s.upstream.requests_to("CreateSession");
        assert_eq!(creates.len(), 1);
        let mut expected = spanner::create_session(spanner::DATABASE);
        expected.extend(spanner::creator_role_bytes(spanner::ROLE));
        assert_eq!(creates[0].message()?, expected);
        assert_eq!(
            expected[expected.len() - spanner::ROLE.len() - 4..][..4],
            [
                0x12,
                spanner::ROLE.len() as u8 + 2,
                0x2a,
                spanner::ROLE.len() as u8
            ]
        );

        // The caller's JWT went nowhere: not in any upstream header or body, not in the audit.
        for r in s.upstream.requests() {
            for (name, value) in &r.headers {
                assert!(
                    !String::from_utf8_lossy(value.as_bytes()).contains(&s.token),
                    "the caller's JWT reached upstream in `{name}` of {}",
                    r.path
                );
            }
            assert!(
                !String::from_utf8_lossy(&r.body).contains(&s.token),
                "the caller's JWT reached upstream in the body of {}",
                r.path
            );
        }
        for record in s.gw.gateway.audit_records()? {
            let line = record.to_string();
            assert!(
                !line.contains(&s.token) && !line.contains(UPSTREAM_TOKEN),
                "{line}"
            );
        }
        Ok(())
    })
    .await
}

/// A caller may send `content-length` (HTTP/2 allows it; curl and hyper-based clients do). When
/// the connector appends bytes (CreateSession's forced role), the length upstream must be the
/// length of what is sent, or upstream's HTTP/2 stack resets the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_content_length_is_not_forwarded_stale() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let body = wire::frame(&spanner::create_session(spanner::DATABASE));
        let length = body.len().to_string();
        let bearer = format!("Bearer {}", s.token);
        let before = s.upstream.requests_to("CreateSession").len();
        let reply = s
            .client
            .call(
                &spanner::path("CreateSession"),
                &[
                    ("authorization", bearer.as_str()),
                    ("content-length", length.as_str()),
                ],
                body,
            )
            .await?;
        let record = s.audit(&reply).await?;
        assert_eq!(
            reply.code(),
            Some(code::OK),
            "{}: {record}",
            reply.message()
        );
        let sent = s.upstream.requests_to("CreateSession");
        assert_eq!(sent.len(), before + 1);
        if let Some(forwarded) = sent[before].header("content-length") {
            assert_eq!(forwarded, sent[before].body.len().to_string());
        }
        Ok(())
    })
    .await
}

/// The same header on a call the connector does not change is harmless, and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_content_length_on_an_unchanged_call_passes() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let body = wire::frame(&spanner::execute_sql(&s.session, "SELECT 1"));
        let length = body.len().to_string();
        let bearer = format!("Bearer {}", s.token);
        let reply = s
            .client
            .call(
                &spanner::path("ExecuteSql"),
                &[
                    ("authorization", bearer.as_str()),
                    ("content-length", length.as_str()),
                ],
                body.clone(),
            )
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("ExecuteSql")[0].body, body);
        Ok(())
    })
    .await
}

// 7 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_comes_through_whole_and_in_order() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        s.upstream.script(
            "ExecuteStreamingSql",
            vec![],
            Reply::Stream {
                count: 200,
                size: 1024,
                delay: Duration::ZERO,
            },
        );
        let reply = s
            .unary(
                "ExecuteStreamingSql",
                &spanner::execute_sql(&s.session, "SELECT * FROM t"),
            )
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert!(!reply.trailers_only());
        assert_eq!(
            reply
                .trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        assert_eq!(reply.messages.len(), 200);
        for (i, m) in reply.messages.iter().enumerate() {
            assert_eq!(m.len(), 1024, "message {i}");
            assert_eq!(
                u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
                i as u32,
                "order"
            );
            assert!(m[4..].iter().all(|&b| b == i as u8), "message {i} content");
        }
        let record = s.audit(&reply).await?;
        assert_eq!(record["grpc_status"], 0, "{record}");
        assert!(errors(&record).is_empty(), "{record}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_does_not_read_holds_the_upstream_back() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        const COUNT: usize = 1024;
        const SIZE: usize = 64 << 10;
        s.upstream.script(
            "ExecuteStreamingSql",
            vec![],
            Reply::Stream {
                count: COUNT,
                size: SIZE,
                delay: Duration::ZERO,
            },
        );
        let bearer = format!("Bearer {}", s.token);
        let (response, started) = s
            .client
            .start(
                &spanner::path("ExecuteStreamingSql"),
                &[("authorization", bearer.as_str())],
                wire::frame(&spanner::execute_sql(&s.session, "SELECT * FROM big")),
            )
            .await?;
        assert_eq!(response.status(), 200);
        // Read nothing for a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let offered = s.upstream.streamed_bytes();
        assert!(offered > 0, "the upstream never started sending");
        assert!(
            offered < 32 << 20,
            "the upstream could hand over {offered} bytes to a caller that read nothing"
        );
        // Now read it all.
        let reply = read_reply(response, started).await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(reply.messages.len(), COUNT);
        assert!(
            reply
                .messages
                .iter()
                .enumerate()
                .all(|(i, m)| m.len() == SIZE
                    && u32::from_be_bytes([m[0], m[1], m[2], m[3]]) == i as u32),
            "messages out of order or cut"
        );
        assert_eq!(s.upstream.streamed_bytes(), (COUNT * (SIZE + 5)) as u64);
        eprintln!("held back at {offered} bytes of {}", COUNT * (SIZE + 5));
        Ok(())
    })
    .await
}

// 8 ----------------------------------------------------------------------------------------

/// Request metadata, in order.
type Metadata<'a> = Vec<(&'a str, &'a str)>;

/// An ExecuteSql message of exactly `len` bytes.
fn execute_sql_of_len(session: &str, len: usize) -> Vec<u8> {
    (0..len)
        .map(|pad| spanner::execute_sql(session, &format!("SELECT 1 --{}", "x".repeat(pad))))
        .find(|m| m.len() == len)
        .expect("some padding makes the length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_calls_never_reach_upstream_and_are_audited() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let path = spanner::path("ExecuteSql");
        let request = spanner::execute_sql(&s.session, "SELECT 1");
        let bearer = format!("Bearer {}", s.token);
        let auth = ("authorization", bearer.as_str());
        let mut twice = wire::frame(&request).to_vec();
        twice.extend_from_slice(&wire::frame(&request));
        let mut repeated = proto::bytes_field(1, s.session.as_bytes());
        repeated.extend(proto::bytes_field(1, s.session.as_bytes()));
        proto::put_bytes(&mut repeated, 3, b"SELECT 1");
        let too_big = execute_sql_of_len(&s.session, MAX_MESSAGE + 1);
        // The connector declares its routing headers, so the host must pass this one to it.
        let other_database = format!("{}-other", spanner::DATABASE);

        let cases: Vec<(&str, Metadata<'_>, Bytes, i32)> = vec![
            (
                "compressed",
                vec![auth, ("grpc-encoding", "gzip")],
                wire::frame_with_flag(1, &request),
                code::UNIMPLEMENTED,
            ),
            (
                "two messages",
                vec![auth],
                Bytes::from(twice),
                code::INVALID_ARGUMENT,
            ),
            (
                "over max_message_bytes",
                vec![auth],
                wire::frame(&too_big),
                code::RESOURCE_EXHAUSTED,
            ),
            (
                "field 1 repeated",
                vec![auth],
                wire::frame(&repeated),
                code::INVALID_ARGUMENT,
            ),
            (
                "no credential",
                vec![],
                wire::frame(&request),
                code::UNAUTHENTICATED,
            ),
            (
                "routing metadata naming another database",
                vec![
                    auth,
                    ("google-cloud-resource-prefix", other_database.as_str()),
                ],
                wire::frame(&request),
                code::INVALID_ARGUMENT,
            ),
        ];
        let before = s.upstream.requests().len();
        for (what, metadata, body, expected) in cases {
            let reply = s.client.call(&path, &metadata, body).await?;
            assert_eq!(reply.http_status, 200, "{what}");
            assert_eq!(reply.code(), Some(expected), "{what}: {}", reply.message());
            assert!(reply.trailers_only(), "{what}: not trailers-only");
            let id = reply
                .request_id()
                .unwrap_or_else(|| panic!("{what}: no x-request-id"));
            assert!(reply.message().contains(id), "{what}: {}", reply.message());
            let record = s.gw.gateway.audit_for(id).await?;
            assert_eq!(record["decision"], "deny", "{what}: {record}");
            assert_eq!(record["grpc_status"], expected, "{what}: {record}");
            assert!(
                !record["reason"].as_str().unwrap_or_default().is_empty(),
                "{what}"
            );
        }
        assert_eq!(
            s.upstream.requests().len(),
            before,
            "a refused call reached upstream: {:?}",
            s.upstream.requests()[before..]
                .iter()
                .map(|r| &r.path)
                .collect::<Vec<_>>()
        );

        // The limit is on the message: one of exactly max_message_bytes goes through.
        let at_limit = execute_sql_of_len(&s.session, MAX_MESSAGE);
        let reply = s.unary("ExecuteSql", &at_limit).await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("ExecuteSql").len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_that_is_not_grpc_gets_415_and_is_audited() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let bearer = format!("Bearer {}", s.token);
        let before = s.upstream.requests().len();
        let reply = s
            .client
            .call(
                &spanner::path("ExecuteSql"),
                &[
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                ],
                Bytes::from_static(b"{}"),
            )
            .await?;
        assert_eq!(reply.http_status, 415);
        assert_eq!(s.upstream.requests().len(), before);
        let refused = records_where(&s.gw.gateway, |r| {
            r["decision"] == "deny" && r["path"] == spanner::path("ExecuteSql")
        })
        .await?;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("not a gRPC call"),
            "{}",
            refused[0]
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_that_is_not_grpc_gets_its_request_id() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let bearer = format!("Bearer {}", s.token);
        let reply = s
            .client
            .call(
                &spanner::path("ExecuteSql"),
                &[
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                ],
                Bytes::from_static(b"{}"),
            )
            .await?;
        assert_eq!(reply.http_status, 415);
        let id = reply.request_id().expect("x-request-id on the 415");
        let record = s.gw.gateway.audit_for(id).await?;
        assert_eq!(record["decision"], "deny", "{record}");
        Ok(())
    })
    .await
}

// 9 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_that_is_down_gets_retried_then_unavailable() -> Result<()> {
    bounded(async {
        // Nothing listens on the upstream port.
        let issuer = OidcIssuer::start().await?;
        let closed = intentgate_tests::free_port()?;
        let gw =
            GrpcGateway::start(issuer.url(), &format!("http://127.0.0.1:{closed}"), "").await?;
        let client = GrpcClient::connect(&gw.url).await?;
        let token = issuer.mint_for(TokenKind::Valid, SUBJECT, AUDIENCE).await?;
        let reply = client
            .unary(
                "CreateSession",
                Some(&token),
                &spanner::create_session(spanner::DATABASE),
                &[],
            )
            .await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE), "{}", reply.message());
        let id = reply.request_id().expect("x-request-id").to_string();
        assert!(reply.message().contains(&id), "{}", reply.message());
        let record = gw.gateway.audit_for(&id).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["grpc_status"], code::UNAVAILABLE, "{record}");
        assert_eq!(retries(&record), 4, "5 attempts in all: {record}");
        assert!(
            errors(&record).len() >= 5
                && errors(&record)
                    .iter()
                    .all(|e| e.contains(&closed.to_string())),
            "{record}"
        );
        assert!(
            reply.elapsed >= min_wait_before_attempt(5),
            "{:?}",
            reply.elapsed
        );
        assert!(
            reply.elapsed < Duration::from_secs(10),
            "{:?}",
            reply.elapsed
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_that_goes_away_is_retried_only_for_replay_safe_calls() -> Result<()> {
    bounded(async {
        let mut s = setup().await?;
        let port = s.upstream.url().rsplit(':').next().unwrap().to_string();
        s.upstream.shutdown().await;

        let request = spanner::execute_sql(&s.session, "SELECT 1");
        let reply = s.unary("ExecuteSql", &request).await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE), "{}", reply.message());
        let id = reply.request_id().expect("x-request-id").to_string();
        assert!(reply.message().contains(&id), "{}", reply.message());
        let record = s.audit(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(retries(&record), 4, "{record}");
        assert!(!errors(&record).is_empty(), "{record}");
        assert!(
            record["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(&port)
                || errors(&record).iter().any(|e| e.contains(&port)),
            "{record}"
        );

        let reply = s.unary("ExecuteStreamingSql", &request).await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE), "{}", reply.message());
        let record = s.audit(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(retries(&record), 0, "{record}");
        assert!(!errors(&record).is_empty(), "{record}");
        Ok(())
    })
    .await
}

// 10 ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_stay_bound_across_replicas() -> Result<()> {
    bounded(async {
        let s = setup().await?;
        let replica = GrpcGateway::start(
            s.issuer.url(),
            &s.upstream.url(),
            &format!("max_message_bytes = {MAX_MESSAGE}"),
        )
        .await?;
        let client2 = GrpcClient::connect(&replica.url).await?;
        let audit2 = |reply: &GrpcReply| {
            let id = reply.request_id().unwrap().to_string();
            let gateway = &replica.gateway;
            async move { gateway.audit_for(&id).await }
        };
        let request = spanner::execute_sql(&s.session, "SELECT 1");

        // Replica 1 made the session: it knows the role without asking.
        let reply = s.unary("ExecuteSql", &request).await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert!(s.upstream.requests_to("GetSession").is_empty());

        // Replica 2 asks upstream once, with its own credential.
        let reply = client2
            .unary("ExecuteSql", Some(&s.token), &request, &[])
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        let lookups = s.upstream.requests_to("GetSession");
        assert_eq!(lookups.len(), 1);
        assert_eq!(lookups[0].message()?, spanner::get_session(&s.session));
        assert_eq!(
            lookups[0].header("authorization"),
            Some(format!("Bearer {UPSTREAM_TOKEN}").as_str())
        );
        assert_eq!(lookups[0].header("x-request-id"), reply.request_id());
        assert!(lookups[0].at < s.upstream.requests_to("ExecuteSql")[1].at);
        let record = audit2(&reply).await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["capability_lookup"], true, "{record}");
        assert_eq!(record["binding"], "database_role=app_role", "{record}");

        // And remembers the answer.
        let reply = client2
            .unary("ExecuteSql", Some(&s.token), &request, &[])
            .await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("GetSession").len(), 1);
        let record = audit2(&reply).await?;
        assert_ne!(record["capability_lookup"], true, "{record}");
        assert_eq!(s.upstream.requests_to("ExecuteSql").len(), 3);

        // A session upstream does not know: NOT_FOUND, nothing forwarded.
        let unknown = format!("{}/sessions/never-made", spanner::DATABASE);
        let reply = client2
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &spanner::execute_sql(&unknown, "SELECT 1"),
                &[],
            )
            .await?;
        assert_eq!(reply.code(), Some(code::NOT_FOUND), "{}", reply.message());
        assert_eq!(s.upstream.requests_to("GetSession").len(), 2);
        let record = audit2(&reply).await?;
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["capability_lookup"], true, "{record}");

        // A session upstream holds with another role: PERMISSION_DENIED, nothing forwarded.
        let foreign = format!("{}/sessions/someone-elses", spanner::DATABASE);
        s.upstream.add_session(&foreign, "other_role");
        let reply = client2
            .unary(
                "ExecuteSql",
                Some(&s.token),
                &spanner::execute_sql(&foreign, "SELECT 1"),
                &[],
            )
            .await?;
        assert_eq!(
            reply.code(),
            Some(code::PERMISSION_DENIED),
            "{}",
            reply.message()
        );
        assert_eq!(s.upstream.requests_to("GetSession").len(), 3);
        let record = audit2(&reply).await?;
        assert_eq!(record["decision"], "deny", "{record}");
        assert!(
            record["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("other_role"),
            "{record}"
        );
        // Replica 1 never saw it either, and asks too.
        let reply = s
            .unary("ExecuteSql", &spanner::execute_sql(&foreign, "SELECT 1"))
            .await?;
        assert_eq!(
            reply.code(),
            Some(code::PERMISSION_DENIED),
            "{}",
            reply.message()
        );
        assert_eq!(
            s.upstream.requests_to("ExecuteSql").len(),
            3,
            "a denied call was forwarded"
        );
        Ok(())
    })
    .await
}

// The harness ---------------------------------------------------------------------------------

/// The scripted upstream and the raw client agree with each other without intentgate between
/// them, so a failure above is intentgate's, not the harness's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_harness_speaks_grpc_to_itself() -> Result<()> {
    bounded(async {
        let upstream = ScriptedUpstream::start().await?;
        let client = GrpcClient::connect(&upstream.url()).await?;
        let mut create = spanner::create_session(spanner::DATABASE);
        create.extend(spanner::creator_role_bytes("r1"));
        let reply = client.unary("CreateSession", None, &create, &[]).await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        let name = proto::last_bytes(&reply.messages[0], 1)?.unwrap().to_vec();
        let name = String::from_utf8(name)?;
        assert_eq!(
            reply.messages[0],
            Bytes::from(spanner::session(&name, "r1"))
        );
        let reply = client
            .unary("GetSession", None, &spanner::get_session(&name), &[])
            .await?;
        assert_eq!(
            reply.messages[0],
            Bytes::from(spanner::session(&name, "r1"))
        );
        let reply = client
            .unary("GetSession", None, &spanner::get_session("nope"), &[])
            .await?;
        assert_eq!(reply.code(), Some(code::NOT_FOUND));
        assert!(reply.trailers_only());
        upstream.script(
            "ExecuteSql",
            vec![Reply::status(code::UNAVAILABLE, "once, 100% ü")],
            Reply::Stream {
                count: 3,
                size: 8,
                delay: Duration::from_millis(10),
            },
        );
        let reply = client.unary("ExecuteSql", None, b"x", &[]).await?;
        assert_eq!(reply.code(), Some(code::UNAVAILABLE));
        assert_eq!(reply.message(), "once, 100% ü");
        let reply = client.unary("ExecuteSql", None, b"x", &[]).await?;
        assert_eq!(reply.code(), Some(code::OK));
        assert_eq!(reply.messages.len(), 3);
        assert_eq!(upstream.requests().len(), 5);
        assert_eq!(
            wire::parse_timeout("700m"),
            Some(Duration::from_millis(700))
        );
        assert_eq!(
            wire::parse_timeout("1500000u"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(wire::parse_timeout("5"), None);
        Ok(())
    })
    .await
}
