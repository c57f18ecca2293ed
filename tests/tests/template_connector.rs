//! The template connector (`plugins/template-connector`, an HTTP key-value
//! store) in the real host: a real OIDC issuer, an echo upstream, the
//! `intentgate` binary, and the policies of `examples/template-connector`.
//! Allowed calls reach upstream, denied ones get 403 with a request ID,
//! malformed ones 400 with the connector's reason, and every one is audited.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::process::Command;

use anyhow::Result;
use intentgate_tests::gateway::{Gateway, OidcHttpConfig, TempDir, binary};
use intentgate_tests::http::{self, Method};
use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind, free_port, plugin_path, repo_root};

/// The issuer the example's policies name; the test's issuer replaces it.
const EXAMPLE_ISSUER: &str = "http://127.0.0.1:18080";

/// The shared OIDC + HTTP config with its `[[connector]]` swapped for the
/// template connector under the instance name `kv`.
fn with_kv_connector(config: &OidcHttpConfig, connector_config: &str) -> String {
    let text = config.render();
    let http = format!(
        "[[connector]]\nname = \"http\"\nplugin = \"{}\"\n",
        plugin_path("http").display()
    );
    let kv = format!(
        "[[connector]]\nname = \"kv\"\nplugin = \"{}\"\nconfig = {connector_config}\nlimits = {{ cpu_ms = 20, memory_mib = 16 }}\n",
        plugin_path("template_connector").display()
    );
    let listener = "connector = \"http\"\n";
    assert!(
        text.contains(&http) && text.contains(listener),
        "OidcHttpConfig::render changed shape; update with_kv_connector:\n{text}"
    );
    text.replace(&http, &kv)
        .replace(listener, "connector = \"kv\"\n")
}

struct Setup {
    issuer: OidcIssuer,
    _upstream: EchoUpstream,
    gateway: Gateway,
    _dir: TempDir,
}

async fn setup() -> Result<Setup> {
    let issuer = OidcIssuer::start().await?;
    let upstream = EchoUpstream::start().await?;
    let dir = TempDir::new("template-connector")?;
    let policies =
        std::fs::read_to_string(repo_root().join("examples/template-connector/policies/kv.cedar"))?;
    assert!(policies.contains(EXAMPLE_ISSUER));
    dir.write(
        "policies/kv.cedar",
        &policies.replace(EXAMPLE_ISSUER, issuer.url()),
    )?;
    let port = free_port()?;
    let mut config = OidcHttpConfig::new(issuer.url(), upstream.url(), port);
    config.listener_keys = r#"upstream_credential = { header = "authorization", value_env = "IT_UPSTREAM_TOKEN", prefix = "Bearer " }"#.into();
    let config = dir.write(
        "intentgate.toml",
        &with_kv_connector(&config, r#"{ prefix = "/kv", max_key_bytes = 128 }"#),
    )?;
    let audit = dir.path().join("audit.jsonl");
    let gateway = Gateway::start(
        &config,
        &audit,
        port,
        &[("IT_UPSTREAM_TOKEN", "upstream-secret")],
    )
    .await?;
    Ok(Setup {
        issuer,
        _upstream: upstream,
        gateway,
        _dir: dir,
    })
}

async fn call(
    s: &Setup,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> Result<http::Response> {
    let bearer = format!("Bearer {token}");
    let url = format!("{}{path}", s.gateway.url);
    http::send(
        method,
        &url,
        &[("authorization", bearer.as_str())],
        body.to_string(),
    )
    .await
}

/// The request ID a refusal carries, in its header and body alike.
fn refusal_request_id(response: &http::Response, error: &str) -> Result<String> {
    let body = response.json()?;
    let id = response
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert_eq!(body["error"], error, "{body}");
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_connector_classifies_and_the_policies_decide() -> Result<()> {
    let s = setup().await?;
    let alice = s.issuer.mint_for(TokenKind::Valid, "alice", "it").await?;
    let mallory = s.issuer.mint_for(TokenKind::Valid, "mallory", "it").await?;

    // Allowed: forwarded as it came, with the proxy's credential, and audited
    // with the connector's action and resource.
    for (method, action) in [(Method::GET, "get"), (Method::PUT, "put")] {
        let response = call(&s, method.clone(), "/kv/settings/theme", &alice, "dark").await?;
        assert_eq!(response.status, 200, "{method}: {}", response.text());
        let echoed = response.json()?;
        assert_eq!(echoed["method"], method.as_str());
        assert_eq!(echoed["path"], "/kv/settings/theme");
        assert_eq!(echoed["headers"]["authorization"], "Bearer upstream-secret");
        if method == Method::PUT {
            assert_eq!(echoed["body"], "dark");
        }
        let record = s
            .gateway
            .audit_for(response.header("x-request-id").unwrap())
            .await?;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["action"], format!("Kv::Action::\"{action}\""));
        assert_eq!(record["resource"], "Kv::Bucket::\"settings\"");
        assert_eq!(
            record["policies"],
            serde_json::json!(["alice-edits-settings"])
        );
        assert_eq!(record["upstream_status"], 200);
    }
    let response = call(&s, Method::GET, "/kv/flags/new-checkout", &mallory, "").await?;
    assert_eq!(response.status, 200, "{}", response.text());

    // Denied by policy: 403 with the request ID and the policy's reason; the
    // last one is decided on the key the connector put in the context.
    for (token, path, method, policy) in [
        (
            &alice,
            "/kv/settings/theme",
            Method::DELETE,
            Some("no-deletes"),
        ),
        (&mallory, "/kv/settings/theme", Method::GET, None),
        (
            &alice,
            "/kv/settings/secret.db-password",
            Method::GET,
            Some("no-secret-keys"),
        ),
    ] {
        let response = call(&s, method.clone(), path, token, "").await?;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.text());
        let id = refusal_request_id(&response, "forbidden")?;
        let record = s.gateway.audit_for(&id).await?;
        assert_eq!(record["decision"], "deny", "{record}");
        assert!(record["upstream_status"].is_null(), "forwarded: {record}");
        let reason = response.json()?["reason"].as_str().unwrap().to_string();
        match policy {
            Some(p) => assert_eq!(reason, format!("denied by policy `{p}`")),
            None => assert!(reason.starts_with("no policy permits"), "{reason}"),
        }
    }

    // A method outside the protocol is unsupported: 403 too.
    let response = call(&s, Method::POST, "/kv/settings/theme", &alice, "dark").await?;
    assert_eq!(response.status, 403, "{}", response.text());
    refusal_request_id(&response, "forbidden")?;

    // Malformed calls: 400 with the connector's reason, never forwarded.
    for (path, why) in [
        (
            "/kv/settings/a/b",
            "path `/kv/settings/a/b` is not /kv/<bucket>/<key>",
        ),
        ("/kv/settings/%2e%2e", "key `%2e%2e` must be"),
        ("/kv/Settings/theme", "bucket `Settings` must be"),
        ("/kv/settings/theme?version=2", "has a query string"),
        ("/orders/42", "is not /kv/<bucket>/<key>"),
    ] {
        let response = call(&s, Method::GET, path, &alice, "").await?;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        let id = refusal_request_id(&response, "malformed")?;
        let reason = response.json()?["reason"].as_str().unwrap().to_string();
        assert!(reason.contains(why), "{path}: {reason}");
        let record = s.gateway.audit_for(&id).await?;
        assert_eq!(record["decision"], "deny", "{record}");
        assert!(record["upstream_status"].is_null(), "forwarded: {record}");
    }
    Ok(())
}

#[test]
fn check_refuses_a_bad_connector_config_with_the_plugins_reason() -> Result<()> {
    let dir = TempDir::new("template-connector-check")?;
    let config = OidcHttpConfig::new("http://127.0.0.1:18080", "http://127.0.0.1:19090", 18453);
    dir.write("policies/empty.cedar", "")?;
    let path = dir.write(
        "intentgate.toml",
        &with_kv_connector(&config, "{ max_key_bytes = 0 }"),
    )?;
    let out = Command::new(binary()?)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        !out.status.success(),
        "check accepted max_key_bytes = 0: {stderr}"
    );
    assert!(
        stderr.contains("rejects its config")
            && stderr.contains("`max_key_bytes` must be between 1 and 1024, got 0"),
        "{stderr}"
    );
    Ok(())
}
