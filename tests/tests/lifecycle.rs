//! The process lifecycle, end to end with the real `intentgate` binary: draining on SIGTERM
//! (the call in flight completes, `/readyz` says 503 while `/healthz` says 200, new connections
//! are refused, exit 0), a SIGHUP during start-up (remembered, not fatal), the gauges on
//! `/metrics`, and an `http://` upstream on a system without a CA bundle.
//!
//! Every wait polls with a deadline; no sleep stands in for an assertion about time.
//!
//! Needs `scripts/ensure-peers` (the OIDC issuer, the echo upstream) and `scripts/build-plugins`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use intentgate_tests::gateway::{self, Gateway, OidcHttpConfig, TempDir};
use intentgate_tests::grpc::{
    self, GrpcClient, GrpcGateway, Reply, ScriptedUpstream, code, read_reply, spanner, wire,
};
use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind, free_port, http, today};
use tokio::sync::{Notify, watch};

const POLICIES: &str = r#"@id("alice-reads-orders")
permit (principal, action in [Http::Action::"read"], resource in Http::Path::"/orders")
when { principal.sub == "alice" };
"#;

/// How long one step may take (a step is one state change of the process under test).
const STEP: Duration = Duration::from_secs(5);
/// How long intentgate may take from spawn to ready (debug build: the plugins are compiled).
const START: Duration = Duration::from_secs(30);
/// A bound on a whole test once the binary is built (`Gateway::start` may first run
/// `cargo build`, which waits for any other build of the workspace).
const TEST: Duration = Duration::from_secs(300);

async fn bounded(test: impl Future<Output = Result<()>>) -> Result<()> {
    intentgate_tests::bounded(TEST, test).await
}

/// Polls `probe` every 20 ms until it answers `Some`, for at most `within` (a probe that
/// hangs counts against the deadline too).
async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, probe()).await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET url`'s status and body, `None` when nothing answers.
async fn probe(url: &str) -> Option<(u16, String)> {
    http::get(url).await.ok().map(|r| (r.status, r.text()))
}

/// Polls `GET url` until it answers `status`, for at most `within`; the body.
async fn answers(url: &str, status: u16, within: Duration) -> Result<String> {
    until(
        &format!("GET {url} answering {status}"),
        within,
        move || async move {
            probe(url)
                .await
                .filter(|(s, _)| *s == status)
                .map(|(_, body)| body)
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// An upstream that holds every answer until the test releases it.

/// A plain HTTP/1.1 upstream on 127.0.0.1: each request is counted, then answered `200 held
/// answer` once [`HeldUpstream::release`] is called.
struct HeldUpstream {
    url: String,
    arrived: Arc<Notify>,
    release: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl HeldUpstream {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let arrived = Arc::new(Notify::new());
        let (release, released) = watch::channel(false);
        let notify = arrived.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let notify = notify.clone();
                let released = released.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let notify = notify.clone();
                        let mut released = released.clone();
                        async move {
                            notify.notify_one();
                            let _ = released.wait_for(|r| *r).await;
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"held answer"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            arrived,
            release,
            server,
        })
    }

    /// Waits until a request arrived (one not waited for before).
    async fn arrival(&self) -> Result<()> {
        tokio::time::timeout(STEP, self.arrived.notified())
            .await
            .map_err(|_| anyhow!("no request reached the upstream within {STEP:?}"))
    }

    /// Lets every held answer (and every later one) go.
    fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for HeldUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// A gateway spawned by hand, for what happens before it is ready.

/// `intentgate run` spawned without waiting for it; killed on drop.
struct Spawned {
    child: Child,
    log: std::path::PathBuf,
}

impl Spawned {
    fn spawn(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Result<Self> {
        let mut command = Command::new(gateway::binary()?);
        command
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        for (k, v) in envs {
            command.env(k, v);
        }
        Ok(Self {
            child: command.spawn().context("starting intentgate")?,
            log: log.to_path_buf(),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        ensure!(status.success(), "kill -{name} failed: {status}");
        Ok(())
    }

    /// Waits until the log contains `needle`, for at most `within`; fails at once if the
    /// process exits first.
    async fn wait_log(&mut self, needle: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.exited()? {
                bail!("intentgate exited ({status}) before logging {needle:?}:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("intentgate did not log {needle:?} within {within:?}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the process to exit, for at most `within`.
    async fn exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("intentgate did not exit within {within:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The HTTP config with an admin listener: (config path, proxy port, admin URL).
fn http_config(
    dir: &TempDir,
    issuer: &str,
    upstream: &str,
) -> Result<(std::path::PathBuf, u16, String)> {
    dir.write("policies/orders.cedar", POLICIES)?;
    let port = free_port()?;
    let admin_port = free_port()?;
    let mut config = OidcHttpConfig::new(issuer, upstream, port);
    config.extra_tables = format!("\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n");
    let path = dir.write("intentgate.toml", &config.render())?;
    Ok((path, port, format!("http://127.0.0.1:{admin_port}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_call_in_flight_while_refusing_new_work() -> Result<()> {
    bounded(async {
        let issuer = OidcIssuer::start().await?;
        let upstream = HeldUpstream::start().await?;
        let dir = TempDir::new("lifecycle-drain")?;
        let (config, port, admin) = http_config(&dir, issuer.url(), &upstream.url)?;
        let audit = dir.path().join("audit.jsonl");
        let gateway = Gateway::start(&config, &audit, port, &[]).await?;
        let readyz = format!("{admin}/readyz");
        let healthz = format!("{admin}/healthz");
        answers(&readyz, 200, START).await?;

        // A call in flight: it reached the upstream, which holds its answer.
        let token = issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
        let url = format!("{}/orders/slow", gateway.url);
        let call = tokio::spawn(async move {
            let bearer = format!("Bearer {token}");
            http::get_with(&url, &[("authorization", bearer.as_str())]).await
        });
        upstream.arrival().await?;

        // SIGTERM. `Gateway::stop` waits for the exit, so it runs on a thread of its own.
        let mut gateway = gateway;
        let stopping = tokio::task::spawn_blocking(move || {
            let status = gateway.stop();
            (gateway, status)
        });

        // Draining: /readyz 503 saying so, /healthz 200, the ready gauge 0.
        let body = answers(&readyz, 503, STEP).await?;
        assert!(body.contains("draining"), "/readyz body: {body:?}");
        let (status, _) = probe(&healthz).await.context("/healthz while draining")?;
        assert_eq!(status, 200, "/healthz while draining");
        let (_, metrics) = probe(&format!("{admin}/metrics"))
            .await
            .context("/metrics while draining")?;
        assert!(metrics.contains("\nintentgate_ready 0\n"), "{metrics}");

        // New connections to the proxy port are refused (not accepted and left unanswered).
        until(
            "a refused connection to the proxy port",
            STEP,
            move || async move {
                // Refused means refused at once: a connect the kernel leaves pending (a
                // full backlog) is no answer either.
                let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                match tokio::time::timeout(Duration::from_millis(500), connect).await {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                    _ => None,
                }
            },
        )
        .await?;
        // ...and all of this happened while the call was still in flight.
        assert!(!call.is_finished(), "the held call ended before its answer");
        let (status, body) = probe(&readyz).await.context("/readyz later in the drain")?;
        assert_eq!((status, body.contains("draining")), (503, true));
        assert_eq!(
            probe(&healthz).await.map(|(s, _)| s),
            Some(200),
            "/healthz later in the drain"
        );

        // The call completes, its record is written, and the process exits 0.
        upstream.release();
        let response = tokio::time::timeout(STEP, call)
            .await
            .map_err(|_| anyhow!("the call in flight did not complete"))???;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "held answer");
        let (gateway, status) = tokio::time::timeout(STEP, stopping)
            .await
            .map_err(|_| anyhow!("intentgate did not exit once the call completed"))??;
        let status = status?;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", gateway.log());
        let id = response.header("x-request-id").context("x-request-id")?;
        let record = gateway.audit_for(id).await?;
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["upstream_status"], 200);
        assert!(
            gateway.log().contains("drained; exiting"),
            "{}",
            gateway.log()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_start_up_is_applied_once_serving_not_fatal() -> Result<()> {
    bounded(async {
        let issuer = OidcIssuer::start().await?;
        let upstream = EchoUpstream::start().await?;
        let dir = TempDir::new("lifecycle-hup")?;
        let (config, _port, admin) = http_config(&dir, issuer.url(), upstream.url())?;
        // Build first, so the spawn below is the process starting, not cargo.
        gateway::binary()?;
        let mut spawned = Spawned::spawn(&config, &dir.path().join("intentgate.log"), &[])?;
        // The first log line comes right after the signal handlers are installed, long before
        // the plugins are compiled.
        spawned.wait_log("starting", STEP).await?;
        spawned.signal("HUP")?;
        let log = spawned.log();
        assert!(
            !log.contains("intentgate ready"),
            "the SIGHUP was meant to arrive during start-up, but it was ready already:\n{log}"
        );
        // Not fatal: it becomes ready.
        spawned.wait_log("intentgate ready", START).await?;
        answers(&format!("{admin}/readyz"), 200, STEP).await?;
        // Applied once serving: one reload of the anchors and policies.
        spawned.wait_log("trust anchors reloaded", STEP).await?;
        spawned.wait_log("policies reloaded", STEP).await?;
        let log = spawned.log();
        assert!(log.contains("SIGHUP: reloading"), "{log}");
        assert!(spawned.exited()?.is_none(), "{log}");

        spawned.signal("TERM")?;
        let status = spawned.exit(STEP).await?;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", spawned.log());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_and_finishes_the_grpc_stream_in_flight() -> Result<()> {
    bounded(async {
        let issuer = OidcIssuer::start().await?;
        let upstream = ScriptedUpstream::start().await?;
        let admin_port = free_port()?;
        let GrpcGateway { gateway, url, dir } = GrpcGateway::start(
            issuer.url(),
            &upstream.url(),
            &format!("\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"),
        )
        .await?;
        let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
        answers(&readyz, 200, STEP).await?;
        let client = GrpcClient::connect(&url).await?;
        let token = issuer
            .mint_for(TokenKind::Valid, grpc::SUBJECT, grpc::AUDIENCE)
            .await?;
        let created = client
            .unary(
                "CreateSession",
                Some(&token),
                &spanner::create_session(spanner::DATABASE),
                &[],
            )
            .await?;
        assert_eq!(created.code(), Some(code::OK), "{}", created.message());
        let session = intentgate_tests::grpc::proto::last_bytes(&created.messages[0], 1)?
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .context("the new session's name")?;

        // A stream in flight, held open by flow control: 16 MiB the caller does not read yet.
        const COUNT: usize = 256;
        const SIZE: usize = 64 << 10;
        upstream.script(
            "ExecuteStreamingSql",
            vec![],
            Reply::Stream {
                count: COUNT,
                size: SIZE,
                delay: Duration::ZERO,
            },
        );
        let bearer = format!("Bearer {token}");
        let (response, started) = client
            .start(
                &spanner::path("ExecuteStreamingSql"),
                &[("authorization", bearer.as_str())],
                wire::frame(&spanner::execute_sql(&session, "SELECT * FROM big")),
            )
            .await?;
        assert_eq!(response.status(), 200);

        let mut gateway = gateway;
        let stopping = tokio::task::spawn_blocking(move || {
            let status = gateway.stop();
            (gateway, status)
        });
        answers(&readyz, 503, STEP).await?;
        // GOAWAY: the open connection takes no new calls (the client fails them itself; a
        // call that reached the gate would answer UNAUTHENTICATED).
        let refusal = until(
            "a new call refused on the open connection",
            STEP,
            || async { client.unary("ExecuteSql", None, b"x", &[]).await.err() },
        )
        .await?;
        assert!(
            upstream.streamed_bytes() < (COUNT * (SIZE + 5)) as u64,
            "the stream was not in flight any more"
        );

        // The stream in flight still runs to the end, then the process exits 0.
        let reply = read_reply(response, started).await?;
        assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        assert_eq!(reply.messages.len(), COUNT);
        let (gateway, status) = tokio::time::timeout(STEP, stopping)
            .await
            .map_err(|_| anyhow!("intentgate did not exit once the stream ended"))??;
        let status = status?;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", gateway.log());
        eprintln!("refused after GOAWAY: {refusal:#}");
        drop(gateway);
        drop(dir);
        Ok(())
    })
    .await
}

/// The value of the one series of `/metrics` text that starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Result<f64> {
    let values: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    match values.as_slice() {
        [value] => Ok(value.parse()?),
        _ => bail!("{} series `{series}` in:\n{metrics}", values.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_gauges() -> Result<()> {
    bounded(async {
        let issuer = OidcIssuer::start().await?;
        let upstream = ScriptedUpstream::start().await?;
        let admin_port = free_port()?;
        // The listener's keys come last in the config, so a table after them is top-level.
        let gw = GrpcGateway::start(
            issuer.url(),
            &upstream.url(),
            &format!("\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"),
        )
        .await?;
        let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");
        let before = answers(&metrics_url, 200, STEP).await?;
        assert_eq!(sample(&before, "intentgate_ready")?, 1.0);
        assert_eq!(
            sample(
                &before,
                "intentgate_identity_cache_entries{provider=\"oidc\"}"
            )?,
            0.0
        );
        assert_eq!(
            sample(
                &before,
                "intentgate_capability_cache_entries{listener=\"spanner\"}"
            )?,
            0.0
        );
        assert_eq!(
            sample(
                &before,
                "intentgate_upstream_connections_open{listener=\"spanner\"}"
            )?,
            0.0,
            "no call yet, no upstream connection"
        );

        // Two sessions, one caller: one identity, two capabilities, upstream connections open.
        let client = GrpcClient::connect(&gw.url).await?;
        let token = issuer
            .mint_for(TokenKind::Valid, grpc::SUBJECT, grpc::AUDIENCE)
            .await?;
        for _ in 0..2 {
            let reply = client
                .unary(
                    "CreateSession",
                    Some(&token),
                    &spanner::create_session(spanner::DATABASE),
                    &[],
                )
                .await?;
            assert_eq!(reply.code(), Some(code::OK), "{}", reply.message());
        }
        let after = answers(&metrics_url, 200, STEP).await?;
        assert_eq!(
            sample(
                &after,
                "intentgate_identity_cache_entries{provider=\"oidc\"}"
            )?,
            1.0
        );
        assert_eq!(
            sample(
                &after,
                "intentgate_capability_cache_entries{listener=\"spanner\"}"
            )?,
            2.0
        );
        let open = sample(
            &after,
            "intentgate_upstream_connections_open{listener=\"spanner\"}",
        )?;
        // Calls spread round-robin over `upstream_connections` (4 by default): two calls, two.
        assert_eq!(open, 2.0, "{after}");
        let anchor = format!("{{provider=\"oidc\",anchor=\"{}\"}}", issuer.url());
        // Reviewed today (UTC); a day may have turned since the config was written.
        let age = sample(&after, &format!("intentgate_trust_anchor_age_days{anchor}"))?;
        assert!(age == 0.0 || age == 1.0, "age {age}, reviewed {}", today());
        assert_eq!(
            sample(
                &after,
                &format!("intentgate_trust_anchor_max_age_days{anchor}")
            )?,
            30.0
        );
        for family in [
            "intentgate_ready",
            "intentgate_identity_cache_entries",
            "intentgate_capability_cache_entries",
            "intentgate_upstream_connections_open",
            "intentgate_trust_anchor_age_days",
            "intentgate_trust_anchor_max_age_days",
        ] {
            assert!(
                after.contains(&format!("# TYPE {family} gauge\n")),
                "{family} is not typed as a gauge:\n{after}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_needs_no_ca_bundle() -> Result<()> {
    bounded(async {
        let issuer = OidcIssuer::start().await?;
        let upstream = EchoUpstream::start().await?;
        // rustls-native-certs reads only SSL_CERT_FILE and SSL_CERT_DIR when either is set
        // (the system store otherwise): an empty file and an empty folder mean no roots at all.
        let dir = TempDir::new("lifecycle-no-roots")?;
        let empty_file = dir.write("no-roots/empty.pem", "")?;
        let empty_dir = dir.path().join("no-roots/certs");
        std::fs::create_dir_all(&empty_dir)?;
        let no_roots = [
            ("SSL_CERT_FILE", empty_file.to_str().context("path")?),
            ("SSL_CERT_DIR", empty_dir.to_str().context("path")?),
        ];

        // That environment really leaves no roots: an https:// upstream refuses to start, with
        // the clear error.
        let https = TempDir::new("lifecycle-no-roots-https")?;
        let (config, _, _) = http_config(&https, issuer.url(), "https://127.0.0.1:9")?;
        let mut spawned = Spawned::spawn(&config, &https.path().join("intentgate.log"), &no_roots)?;
        let status = spawned.exit(START).await?;
        assert!(!status.success(), "{status}");
        let log = spawned.log();
        assert!(
            log.contains(
                "cannot load TLS roots for the upstream: no native root CA certificates found"
            ),
            "{log}"
        );

        // An http:// upstream in the same environment starts and proxies.
        let (config, port, _) = http_config(&dir, issuer.url(), upstream.url())?;
        let gateway =
            Gateway::start(&config, &dir.path().join("audit.jsonl"), port, &no_roots).await?;
        let token = issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
        let bearer = format!("Bearer {token}");
        let response = http::get_with(
            &format!("{}/orders/7", gateway.url),
            &[("authorization", bearer.as_str())],
        )
        .await?;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()?["path"], "/orders/7");
        Ok(())
    })
    .await
}
