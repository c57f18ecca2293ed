//! The gateway shape: a TLS listener (rustls) with HTTP/2 and HTTP/1.1, a
//! real client (curl) and a policy that requires TLS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::process::Command;

use anyhow::{Context, Result};
use intentgate_tests::gateway::{Gateway, OidcHttpConfig, TempDir};
use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind, free_port};

const POLICY: &str = r#"@id("alice-reads-over-tls")
permit (principal, action in [Http::Action::"read"], resource)
when { principal.sub == "alice" && context.gate.tls };
"#;

fn curl(args: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .context("running curl")?;
    Ok(String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_http2_and_http1_and_tells_policies() -> Result<()> {
    let issuer = OidcIssuer::start().await?;
    let upstream = EchoUpstream::start().await?;
    let dir = TempDir::new("tls")?;
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-noenc",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=intentgate-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output()
        .context("running openssl")?;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    dir.write("policies/p.cedar", POLICY)?;
    let port = free_port()?;
    let mut config = OidcHttpConfig::new(issuer.url(), upstream.url(), port);
    config.listener_keys = r#"tls = { cert = "cert.pem", key = "key.pem" }"#.into();
    let config = config.render();
    let config = dir.write("intentgate.toml", &config)?;
    let gateway = Gateway::start(&config, &dir.path().join("audit.jsonl"), port, &[]).await?;
    let alice = issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    let cacert = dir.path().join("cert.pem");
    let url = format!("https://127.0.0.1:{port}/orders/1");
    let auth = format!("authorization: Bearer {alice}");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl(&[
            flag,
            "--cacert",
            cacert.to_str().unwrap(),
            "-H",
            &auth,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ])?;
        assert_eq!(out.trim(), format!("200 {version}"), "{flag}");
    }
    let records = gateway.audit_records()?;
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r["decision"] == "allow" && r["policies"][0] == "alice-reads-over-tls")
    );
    // Plaintext to a TLS port gets no answer from the proxy.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{port}/orders/1"),
    ])?;
    assert!(!out.starts_with("200"), "{out}");
    Ok(())
}
