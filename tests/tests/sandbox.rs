//! The plugin sandbox against a deliberately hostile plugin
//! (`plugins/hostile`): every attack is denied within its budget, the
//! reason says what happened, and good calls keep being served meanwhile.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use intentgate::plugin::{
    CallError, Grant, IdentityPlugin, Origin, PluginLimits, PluginRuntime, PluginSpec,
};
use intentgate_tests::plugin_path;

fn limits() -> PluginLimits {
    PluginLimits {
        cpu_ms: 50,
        timeout_ms: 1500,
        memory_mib: 16,
        ..PluginLimits::default()
    }
}

fn spec(config: serde_json::Value, grants: Vec<Grant>) -> PluginSpec {
    PluginSpec {
        name: "hostile".into(),
        path: plugin_path("hostile"),
        config_json: config.to_string(),
        grants,
        limits: limits(),
    }
}

async fn load(
    runtime: &PluginRuntime,
    config: serde_json::Value,
    grants: Vec<Grant>,
) -> IdentityPlugin {
    runtime
        .load_identity(&spec(config, grants))
        .await
        .expect("the hostile plugin loads")
}

fn grant(origin: &str, private: bool) -> Grant {
    Grant {
        origin: Origin::parse(origin).unwrap(),
        private,
    }
}

/// Runs one mode and checks it failed the expected way within `within`.
async fn attack(plugin: &IdentityPlugin, mode: &str, within: Duration) -> CallError {
    let started = Instant::now();
    let result = plugin.authenticate("bearer", mode.as_bytes()).await;
    let took = started.elapsed();
    assert!(
        took < within,
        "mode `{mode}` took {took:?}, over {within:?}"
    );
    match result {
        Ok(identity) => panic!("mode `{mode}` was accepted: {identity:?}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_cpu_budget() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    let error = attack(&plugin, "loop", Duration::from_millis(1000)).await;
    assert!(
        matches!(error, CallError::CpuBudget { cpu_ms: 50, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("CPU budget"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_recursion_and_panics_trap() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    for mode in ["memory", "recursion", "trap"] {
        let error = attack(&plugin, mode, Duration::from_millis(1500)).await;
        assert!(
            matches!(error, CallError::Trap { .. }),
            "mode `{mode}`: {error}"
        );
    }
    let error = attack(&plugin, "recursion", Duration::from_millis(1500)).await;
    assert!(error.to_string().contains("stack overflow"), "{error}");
    // The pool recovers: a good call still works after all of that.
    let identity = plugin.authenticate("bearer", b"ok").await.unwrap();
    assert_eq!(identity.principal.to_string(), r#"Test::User::"ok""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_return_value_is_refused() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    let error = attack(&plugin, "huge", Duration::from_millis(1500)).await;
    // 20 MiB does not fit the 16 MiB memory, the 1 MiB hostcall budget or
    // the 16 KiB attribute cap; whichever bites first, it is a deny.
    assert!(
        matches!(
            error,
            CallError::Trap { .. } | CallError::InvalidOutput { .. }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_capped() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    let started = Instant::now();
    let _ = plugin.authenticate("bearer", b"log-flood").await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    let (written, dropped) = plugin.log_counts();
    assert!(
        written <= u64::from(PluginLimits::default().log_lines_per_call),
        "{written} lines written"
    );
    assert!(dropped > 0, "the flood was not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_outside_the_grants_never_leave() {
    let runtime = PluginRuntime::new().unwrap();
    // Not granted at all.
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    for mode in ["outbound-denied", "outbound-metadata", "outbound-private"] {
        let error = attack(&plugin, mode, Duration::from_millis(1500)).await;
        assert!(
            error.to_string().contains("no grant") || error.to_string().contains("no outbound"),
            "{mode}: {error}"
        );
    }
    assert_eq!(plugin.outbound_sent(), 0);

    // Granted, even with private = true: metadata addresses stay unreachable,
    // and private ones need private = true.
    let grants = vec![
        grant("http://169.254.169.254", true),
        grant("http://10.0.0.1", false),
    ];
    let plugin = load(
        &runtime,
        serde_json::json!({ "ask_outbound": ["http://169.254.169.254", "http://10.0.0.1"] }),
        grants,
    )
    .await;
    let error = attack(&plugin, "outbound-metadata", Duration::from_millis(1500)).await;
    assert!(error.to_string().contains("metadata address"), "{error}");
    let error = attack(&plugin, "outbound-private", Duration::from_millis(1500)).await;
    assert!(error.to_string().contains("private or loopback"), "{error}");
    assert_eq!(plugin.outbound_sent(), 0, "a request left the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_needs_an_explicit_private_grant() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let runtime = PluginRuntime::new().unwrap();
    let config = serde_json::json!({ "ask_outbound": [url], "loopback_url": format!("{url}/") });
    let plugin = load(&runtime, config.clone(), vec![grant(&url, false)]).await;
    let error = attack(&plugin, "outbound-loopback", Duration::from_millis(1500)).await;
    assert!(error.to_string().contains("private or loopback"), "{error}");
    assert_eq!(plugin.outbound_sent(), 0);
    let plugin = load(&runtime, config, vec![grant(&url, true)]).await;
    // The hostile plugin reports the host's answer as `unavailable` unless
    // the request went through, in which case it returns an identity.
    let identity = plugin.authenticate("bearer", b"outbound-loopback").await;
    assert!(identity.is_ok(), "{identity:?}");
    assert_eq!(plugin.outbound_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_asking_for_more_than_granted_does_not_load() {
    let runtime = PluginRuntime::new().unwrap();
    let spec = spec(
        serde_json::json!({ "ask_outbound": ["https://evil.example"] }),
        vec![grant("https://issuer.example", false)],
    );
    let error = runtime
        .load_identity(&spec)
        .await
        .err()
        .expect("must not load");
    let text = error.to_string();
    assert!(
        text.contains("https://evil.example:443") && text.contains("did not grant"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_calls_are_served_while_hostile_ones_run() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = Arc::new(load(&runtime, serde_json::json!({}), vec![]).await);
    let mut attackers = Vec::new();
    for mode in ["loop", "memory", "loop", "recursion"] {
        let p = plugin.clone();
        attackers.push(tokio::spawn(async move {
            p.authenticate("bearer", mode.as_bytes()).await
        }));
    }
    let started = Instant::now();
    let mut good = 0;
    for _ in 0..50 {
        if plugin.authenticate("bearer", b"ok").await.is_ok() {
            good += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(good, 50, "good calls failed while hostile ones ran");
    assert!(took < Duration::from_secs(5), "50 good calls took {took:?}");
    for a in attackers {
        assert!(a.await.unwrap().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_plugin_fails_closed() {
    let runtime = PluginRuntime::new().unwrap();
    let mut spec = spec(serde_json::json!({}), vec![]);
    spec.limits = PluginLimits {
        cpu_ms: 400,
        timeout_ms: 300,
        max_concurrency: 1,
        ..PluginLimits::default()
    };
    let plugin = Arc::new(runtime.load_identity(&spec).await.unwrap());
    let p = plugin.clone();
    let hog = tokio::spawn(async move { p.authenticate("bearer", b"loop").await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let error = plugin.authenticate("bearer", b"ok").await.unwrap_err();
    assert!(
        matches!(error, CallError::Busy { .. } | CallError::Timeout { .. }),
        "{error}"
    );
    assert!(hog.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_rejects_its_config_does_not_load() {
    let runtime = PluginRuntime::new().unwrap();
    let mut spec = spec(serde_json::json!({}), vec![]);
    spec.name = "oidc".into();
    spec.path = plugin_path("oidc");
    spec.config_json = serde_json::json!({ "issuer": "https://issuer.example", "audiences": [], "algorithms": ["HS256"] }).to_string();
    let error = runtime
        .load_identity(&spec)
        .await
        .err()
        .expect("must not load");
    let text = error.to_string();
    assert!(text.contains("plugin `oidc`: rejects its config"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_the_contract_caps_are_refused_by_the_host() {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = load(&runtime, serde_json::json!({}), vec![]).await;
    let error = attack(&plugin, "attrs-over-cap", Duration::from_millis(1500)).await;
    assert!(matches!(error, CallError::InvalidOutput { .. }), "{error}");
    assert!(
        error.to_string().contains("attributes-json is 16385 bytes"),
        "{error}"
    );
}
