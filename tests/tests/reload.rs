//! Hot reload: policy files are watched and reloaded on SIGHUP; an invalid
//! set never goes live; requests in flight during a reload of 10,000
//! policies all complete.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use intentgate_tests::gateway::{Gateway, OidcHttpConfig, TempDir};
use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind, free_port, http};

const ALLOW: &str = r#"@id("alice-reads")
permit (principal, action in [Http::Action::"read"], resource in Http::Path::"/orders")
when { principal.sub == "alice" };
"#;

const DENY: &str = r#"@id("nobody-reads")
forbid (principal, action, resource in Http::Path::"/orders");
@id("alice-reads")
permit (principal, action in [Http::Action::"read"], resource in Http::Path::"/orders")
when { principal.sub == "alice" };
"#;

struct Setup {
    issuer: OidcIssuer,
    _upstream: EchoUpstream,
    gateway: Gateway,
    dir: TempDir,
}

async fn setup(watch: bool, policies: &str) -> Result<Setup> {
    let issuer = OidcIssuer::start().await?;
    let upstream = EchoUpstream::start().await?;
    let dir = TempDir::new("reload")?;
    dir.write("policies/main.cedar", policies)?;
    let port = free_port()?;
    let mut config = OidcHttpConfig::new(issuer.url(), upstream.url(), port);
    config.policy_keys = format!("watch = {watch}");
    let config = config.render();
    let config = dir.write("intentgate.toml", &config)?;
    let gateway = Gateway::start(&config, &dir.path().join("audit.jsonl"), port, &[]).await?;
    Ok(Setup {
        issuer,
        _upstream: upstream,
        gateway,
        dir,
    })
}

async fn status(s: &Setup, token: &str) -> Result<u16> {
    let bearer = format!("Bearer {token}");
    Ok(http::get_with(
        &format!("{}/orders/1", s.gateway.url),
        &[("authorization", &bearer)],
    )
    .await?
    .status)
}

/// Waits until the status becomes `want`, for at most 5 s.
async fn eventually(s: &Setup, token: &str, want: u16) -> Result<()> {
    let started = Instant::now();
    loop {
        let got = status(s, token).await?;
        if got == want {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!("status stayed {got}, wanted {want}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_reload_and_invalid_sets_never_go_live() -> Result<()> {
    let s = setup(true, ALLOW).await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    assert_eq!(status(&s, &alice).await?, 200);
    // A broken file: the last good set keeps answering.
    s.dir.write(
        "policies/main.cedar",
        "@id(\"broken\")\npermit (principal, action, resource\n",
    )?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&s, &alice).await?, 200);
    // A valid change goes live.
    s.dir.write("policies/main.cedar", DENY)?;
    eventually(&s, &alice, 403).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_watching_is_off() -> Result<()> {
    let s = setup(false, ALLOW).await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    assert_eq!(status(&s, &alice).await?, 200);
    s.dir.write("policies/main.cedar", DENY)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status(&s, &alice).await?,
        200,
        "watch = false must not reload on its own"
    );
    s.gateway.hangup()?;
    eventually(&s, &alice, 403).await?;
    Ok(())
}

/// 10,000 policies of the brief's shape, plus the one alice needs.
fn big_set(generation: usize) -> String {
    let mut text = String::from(ALLOW);
    for k in 0..10_000 {
        text.push_str(&format!(
            "@id(\"g{generation}-p{k}\")\npermit (principal == Oidc::Subject::\"x#user-{k}\", action in [Http::Action::\"read\"], resource in Http::Path::\"/svc-{k}\");\n"
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_during_a_reload_of_10000_policies_all_succeed() -> Result<()> {
    let s = Arc::new(setup(true, &big_set(0)).await?);
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    assert_eq!(status(&s, &alice).await?, 200);
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (s, alice, failures, served, stop) = (
            s.clone(),
            alice.clone(),
            failures.clone(),
            served.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            // Bounded: at most 20,000 requests per client; stops once both reloads went live.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match status(&s, &alice).await {
                    Ok(200) => served.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for generation in 1..=2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.dir.write("policies/main.cedar", &big_set(generation))?;
        while s.gateway.log().matches("policies reloaded").count() < generation
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    let reloads = s.gateway.log().matches("policies reloaded").count();
    assert_eq!(
        reloads,
        2,
        "expected both 10,000-policy sets to go live:\n{}",
        s.gateway.log()
    );
    assert!(
        served.load(Ordering::Relaxed) > 50,
        "too few requests were served to mean anything"
    );
    Ok(())
}
