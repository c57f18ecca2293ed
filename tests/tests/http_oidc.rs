//! End to end: a real OIDC issuer (oauth2-mock-server) and a real upstream,
//! the `intentgate` binary with the OIDC identity plugin and the HTTP
//! connector in between. Every attempt must be decided as the policies say,
//! and audited.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use anyhow::Result;
use intentgate_tests::gateway::{Gateway, OidcHttpConfig, TempDir};
use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind, free_port, http, today};

const POLICIES: &str = r#"
@id("alice-reads-orders")
permit (
  principal,
  action in [Http::Action::"read"],
  resource in Http::Path::"/orders"
) when { principal.sub == "alice" };

@id("no-writes-to-orders")
forbid (principal, action in [Http::Action::"write"], resource in Http::Path::"/orders");

@id("alice-writes-orders-is-still-forbidden")
permit (principal, action in [Http::Action::"write"], resource in Http::Path::"/orders")
when { principal.sub == "alice" };

@id("stale-trust-anchor")
forbid (principal, action, resource) when { context.gate.trust_anchor_age_days > 30 };
"#;

struct Setup {
    issuer: OidcIssuer,
    _upstream: EchoUpstream,
    gateway: Gateway,
    admin: String,
    _dir: TempDir,
}

async fn setup(reviewed: &str) -> Result<Setup> {
    let issuer = OidcIssuer::start().await?;
    let upstream = EchoUpstream::start().await?;
    let dir = TempDir::new("http-oidc")?;
    dir.write("policies/orders.cedar", POLICIES)?;
    let port = free_port()?;
    let admin_port = free_port()?;
    let audit = dir.path().join("audit.jsonl");
    let mut config = OidcHttpConfig::new(issuer.url(), upstream.url(), port);
    config.reviewed = reviewed.to_string();
    config.extra_tables = format!("\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n");
    config.listener_keys = r#"upstream_credential = { header = "authorization", value_env = "IT_UPSTREAM_TOKEN", prefix = "Bearer " }"#.into();
    let config = config.render();
    let config = dir.write("intentgate.toml", &config)?;
    let gateway = Gateway::start(
        &config,
        &audit,
        port,
        &[("IT_UPSTREAM_TOKEN", "upstream-secret")],
    )
    .await?;
    let admin = format!("http://127.0.0.1:{admin_port}");
    Ok(Setup {
        issuer,
        _upstream: upstream,
        gateway,
        admin,
        _dir: dir,
    })
}

async fn get(s: &Setup, path: &str, token: Option<&str>) -> Result<http::Response> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-tenant", "acme")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    http::get_with(&format!("{}{path}", s.gateway.url), &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_denied_requests_are_decided_forwarded_and_audited() -> Result<()> {
    let mut s = setup(&today()).await?;
    assert_eq!(
        http::get(&format!("{}/healthz", s.admin)).await?.status,
        200
    );
    assert_eq!(http::get(&format!("{}/readyz", s.admin)).await?.status, 200);
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;

    // Allowed: forwarded with the upstream credential, the caller's stripped.
    let response = get(&s, "/orders/42?x=1", Some(&alice)).await?;
    assert_eq!(response.status, 200, "{}", response.text());
    let request_id = response
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    let echoed = response.json()?;
    assert_eq!(echoed["path"], "/orders/42");
    assert_eq!(echoed["headers"]["authorization"], "Bearer upstream-secret");
    assert_eq!(echoed["headers"]["x-request-id"], request_id.as_str());
    assert!(
        !echoed.to_string().contains(&alice),
        "the caller's token reached the upstream"
    );
    let record = s.gateway.audit_for(&request_id).await?;
    assert_eq!(record["decision"], "allow");
    assert_eq!(
        record["policies"],
        serde_json::json!(["alice-reads-orders"])
    );
    assert_eq!(
        record["principal"],
        format!("Oidc::Subject::\"{}#alice\"", s.issuer.url())
    );
    assert_eq!(record["action"], "Http::Action::\"GET\"");
    assert_eq!(record["resource"], "Http::Path::\"/orders/42\"");
    assert_eq!(record["upstream_status"], 200);
    assert!(record["latency_us"].as_u64().is_some());
    let line = serde_json::to_string(&record)?;
    assert!(
        !line.contains(&alice) && !line.contains("upstream-secret"),
        "a secret reached the audit trail"
    );

    // A write is forbidden even though a permit matches: forbid wins.
    let bearer = format!("Bearer {alice}");
    let response = http::send(
        http::Method::POST,
        &format!("{}/orders/42", s.gateway.url),
        &[("authorization", bearer.as_str())],
        "{}",
    )
    .await?;
    assert_eq!(response.status, 403);
    let record = s
        .gateway
        .audit_for(response.header("x-request-id").unwrap())
        .await?;
    assert_eq!(record["decision"], "deny");
    assert_eq!(
        record["policies"],
        serde_json::json!(["no-writes-to-orders"])
    );

    // Another valid subject has no permit: default deny.
    let mallory = s.issuer.mint_for(TokenKind::Valid, "mallory", "it").await?;
    let response = get(&s, "/orders/42", Some(&mallory)).await?;
    assert_eq!(response.status, 403);
    let record = s
        .gateway
        .audit_for(response.header("x-request-id").unwrap())
        .await?;
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("no policy permits"),
        "{record}"
    );

    // No credential at all.
    let response = get(&s, "/orders/42", None).await?;
    assert_eq!(response.status, 401);
    let record = s
        .gateway
        .audit_for(response.header("x-request-id").unwrap())
        .await?;
    assert!(
        record["reason"].as_str().unwrap().contains("no credential"),
        "{record}"
    );

    // SIGTERM drains and exits cleanly, with every record written.
    let count = s.gateway.audit_records()?.len();
    assert!(s.gateway.stop()?.success());
    assert_eq!(count, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_denied_with_a_clear_reason() -> Result<()> {
    let s = setup(&today()).await?;
    let cases = [
        (TokenKind::AlgNone, "none"),
        (TokenKind::Hs256RsaPublicKey, "hs256"),
        (TokenKind::WrongAud, "audience"),
        (TokenKind::WrongIss, "issuer"),
        (TokenKind::Expired, "expired"),
        (TokenKind::NotYetValid, "not valid"),
        (TokenKind::UnknownKid, "kid"),
        (TokenKind::Tampered, "signature"),
        (TokenKind::Oversized, "bytes"),
    ];
    for (kind, expected) in cases {
        let token = s.issuer.mint_for(kind, "alice", "it").await?;
        let response = get(&s, "/orders/42", Some(&token)).await?;
        assert_eq!(response.status, 401, "{kind:?}: {}", response.text());
        // The caller is told where to look, not why: that is for the audit trail.
        assert!(
            !response.text().to_ascii_lowercase().contains(expected),
            "{kind:?}: the reason leaked to the caller: {}",
            response.text()
        );
        let record = s
            .gateway
            .audit_for(response.header("x-request-id").unwrap())
            .await?;
        let reason = record["reason"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            reason.contains(expected),
            "{kind:?}: reason `{reason}` does not mention `{expected}`"
        );
        assert_eq!(record["decision"], "deny", "{kind:?}");
        assert!(
            !serde_json::to_string(&record)?.contains(&token),
            "{kind:?}: the token reached the audit trail"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_cached_and_rotated_keys_are_fetched_once() -> Result<()> {
    let s = setup(&today()).await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    for i in 0..20 {
        let response = get(&s, "/orders/1", Some(&alice)).await?;
        assert_eq!(response.status, 200);
        let record = s
            .gateway
            .audit_for(response.header("x-request-id").unwrap())
            .await?;
        assert_eq!(record["identity_cached"], i > 0, "request {i}");
    }
    let before = s.issuer.stats().await?;
    assert_eq!(
        before.jwks_fetches(),
        1,
        "the JWKS is fetched once and cached on the host"
    );
    assert_eq!(before.discovery_fetches(), 1);
    // A token signed with a freshly added key: the plugin refreshes the JWKS once.
    let rotated = s.issuer.mint_for(TokenKind::Rotated, "alice", "it").await?;
    let response = get(&s, "/orders/1", Some(&rotated)).await?;
    assert_eq!(response.status, 200, "{}", response.text());
    let after = s.issuer.stats().await?;
    assert_eq!(after.jwks_fetches(), 2);
    // ES256 tokens from the same issuer verify too.
    let es = s
        .issuer
        .mint_for(TokenKind::ValidEs256, "alice", "it")
        .await?;
    assert_eq!(get(&s, "/orders/1", Some(&es)).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_trust_anchor_authenticates_no_one() -> Result<()> {
    let reviewed = intentgate_tests::days_from_today(-45);
    let s = setup(&reviewed).await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    let response = get(&s, "/orders/42", Some(&alice)).await?;
    assert_eq!(response.status, 401);
    let record = s
        .gateway
        .audit_for(response.header("x-request-id").unwrap())
        .await?;
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("past its maximum age of 30 days"),
        "{record}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_key_ids_cannot_make_the_host_hammer_the_issuer() -> Result<()> {
    let s = setup(&today()).await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    assert_eq!(get(&s, "/orders/1", Some(&alice)).await?.status, 200);
    for _ in 0..10 {
        let token = s
            .issuer
            .mint_for(TokenKind::UnknownKid, "alice", "it")
            .await?;
        assert_eq!(get(&s, "/orders/1", Some(&token)).await?.status, 401);
    }
    let stats = s.issuer.stats().await?;
    // One fetch at first use, then at most one forced refresh per 10 s.
    assert_eq!(
        stats.jwks_fetches(),
        2,
        "unknown key ids refetched the JWKS {} times",
        stats.jwks_fetches()
    );
    Ok(())
}
