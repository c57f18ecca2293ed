//! A plugin that traps, loops or breaks the contract during a real request:
//! the caller gets a 503 that points at the audit record, and the audit
//! record says which plugin failed and how. Nothing is forwarded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use anyhow::Result;
use intentgate_tests::gateway::{Gateway, TempDir};
use intentgate_tests::{EchoUpstream, free_port, http, plugin_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_failures_deny_with_the_reason_in_the_audit() -> Result<()> {
    let upstream = EchoUpstream::start().await?;
    let dir = TempDir::new("plugin-failures")?;
    dir.write(
        "policies/p.cedar",
        "@id(\"ok-reads\")\npermit (principal == Test::User::\"ok\", action in [Http::Action::\"read\"], resource);\n",
    )?;
    let port = free_port()?;
    let today = intentgate_tests::today();
    let config = format!(
        r#"
[audit]
output = "audit.jsonl"

[[identity]]
name = "hostile"
plugin = "{hostile}"
limits = {{ cpu_ms = 50, timeout_ms = 1000, memory_mib = 16 }}

[[trust_anchor]]
id = "test"
provider = "hostile"
reviewed = "{today}"

[[connector]]
name = "http"
plugin = "{http}"

[policy]
policies = ["policies"]

[[listener]]
name = "it"
protocol = "http"
bind = "127.0.0.1:{port}"
identity = "hostile"
connector = "http"
credential = {{ header = "authorization", scheme = "Bearer" }}
upstream = "{upstream}"
"#,
        hostile = plugin_path("hostile").display(),
        http = plugin_path("http").display(),
        upstream = upstream.url(),
    );
    let config = dir.write("intentgate.toml", &config)?;
    let gateway = Gateway::start(&config, &dir.path().join("audit.jsonl"), port, &[]).await?;
    let url = format!("{}/orders/1", gateway.url);

    let cases = [
        ("trap", 503, "error", "trapped"),
        ("loop", 503, "error", "CPU budget of 50 ms"),
        ("recursion", 503, "error", "stack overflow"),
        ("attrs-over-cap", 503, "error", "invalid answer"),
        ("ok", 200, "allow", "ok-reads"),
    ];
    for (mode, status, decision, reason) in cases {
        let bearer = format!("Bearer {mode}");
        let response = http::get_with(&url, &[("authorization", &bearer)]).await?;
        assert_eq!(response.status, status, "{mode}: {}", response.text());
        let record = gateway
            .audit_for(response.header("x-request-id").unwrap())
            .await?;
        assert_eq!(record["decision"], decision, "{mode}: {record}");
        assert!(
            record["reason"].as_str().unwrap().contains(reason),
            "{mode}: {record}"
        );
        if status != 200 {
            assert!(record.get("upstream_status").is_none(), "{mode}: forwarded");
            assert!(
                response.text().contains("audit record"),
                "{mode}: {}",
                response.text()
            );
        }
    }
    Ok(())
}
