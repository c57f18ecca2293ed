//! The whole decision path, side by side with bare Cedar, in one run:
//!
//! - `plugin_call/fresh_instance`: one connector call (the HTTP plugin's
//!   `classify`) in a fresh store and instance, as every request pays it;
//! - `decision/{10,1000,10000}`: cached identity + classify + indexed Cedar
//!   (what a request costs in the proxy), next to
//!   `bare_cedar/{10,1000,10000}`: `Authorizer::is_authorized` over the whole
//!   set for the same request.
//!
//! Needs the plugins built (`scripts/build-plugins`). Run:
//! `cargo bench -p intentgate --bench decision`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use intentgate::identity_cache::{IdentityCache, digest};
use intentgate::model::{EntityRef, GateFacts, Identity};
use intentgate::plugin::{CallInput, ConnectorPlugin, PluginLimits, PluginRuntime, PluginSpec};
use intentgate::policy::{LoadedPolicies, PolicyText, Query, SchemaFragmentSource, load_texts};

fn plugin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/components")
        .join(format!("intentgate_{name}.wasm"));
    assert!(
        path.is_file(),
        "plugin `{name}` is not built: run scripts/build-plugins"
    );
    path
}

fn policies(connector: &ConnectorPlugin, n: usize) -> LoadedPolicies {
    let mut text = String::new();
    for k in 0..n {
        text.push_str(&format!(
            "@id(\"p{k}\")\npermit (principal == Test::User::\"user-{k}\", action in [Http::Action::\"read\"], resource in Http::Path::\"/svc-{k}\");\n"
        ));
    }
    text.push_str("@id(\"stale-trust\")\nforbid (principal, action, resource) when { context.gate.trust_anchor_age_days > 30 };\n");
    let fragments = vec![
        SchemaFragmentSource {
            origin: "bench".into(),
            text: "namespace Test { entity User; }".into(),
        },
        SchemaFragmentSource {
            origin: "plugin `http`".into(),
            text: connector.info().schema.clone(),
        },
    ];
    load_texts(
        &fragments,
        &["Test::User".to_string()],
        &[PolicyText {
            path: "bench.cedar".into(),
            text,
        }],
    )
    .unwrap_or_else(|d| panic!("bench policies do not load: {d:?}"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime = PluginRuntime::new().unwrap();
    let spec = PluginSpec {
        name: "http".into(),
        path: plugin("http"),
        config_json: "{}".into(),
        grants: vec![],
        limits: PluginLimits::default(),
    };
    let connector = Arc::new(rt.block_on(runtime.load_connector(&spec)).unwrap());

    let mut group = c.benchmark_group("plugin_call");
    let input = CallInput {
        protocol: "http".into(),
        method: "GET".into(),
        path: "/svc-5/items/42".into(),
        ..Default::default()
    };
    group.bench_function("fresh_instance", |b| {
        b.to_async(&rt)
            .iter(|| async { connector.classify(&input).await.unwrap() });
    });
    // The floor: a trivial guest (the hostile plugin's `ok` mode) in the same runtime.
    let hostile = PluginSpec {
        name: "hostile".into(),
        path: plugin("hostile"),
        config_json: "{}".into(),
        grants: vec![],
        limits: PluginLimits::default(),
    };
    let hostile = rt.block_on(runtime.load_identity(&hostile)).unwrap();
    group.bench_function("fresh_instance_trivial_guest", |b| {
        b.to_async(&rt)
            .iter(|| async { hostile.authenticate("bearer", b"ok").await.unwrap() });
    });
    group.finish();

    let cache = IdentityCache::new(1024);
    let mut group = c.benchmark_group("decision");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut bare = Vec::new();
    for n in [10usize, 1000, 10_000] {
        let set = policies(&connector, n);
        let k = n / 2;
        let credential = format!("token-{k}");
        let identity = Identity {
            principal: EntityRef::new("Test::User", format!("user-{k}")),
            attributes: serde_json::json!({}),
            parents: vec![],
            expires_at: u64::MAX,
            trust_anchor: "bench".into(),
            provider: "bench".into(),
        };
        cache.insert(digest("bench", credential.as_bytes()), identity, 0);
        let input = CallInput {
            protocol: "http".into(),
            method: "GET".into(),
            path: format!("/svc-{k}/items/42"),
            ..Default::default()
        };
        let facts = GateFacts {
            request_id: "bench".into(),
            listener: "bench".into(),
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            identity_provider: "bench".into(),
            trust_anchor: "bench".into(),
            trust_anchor_age_days: 3,
            now_unix: 1_795_800_000,
            tls: false,
        };
        // Check once that the path allows what it should, indexed and bare alike.
        let classification = rt.block_on(connector.classify(&input)).unwrap();
        let id = cache
            .get(&digest("bench", credential.as_bytes()), 1)
            .unwrap();
        let query = Query {
            principal: &id.principal,
            principal_attributes: &id.attributes,
            principal_parents: &id.parents,
            request: &classification.requests[0],
            gate: &facts,
        };
        assert!(
            set.authorize(&query).allowed,
            "indexed decision at {n} must allow"
        );
        assert!(
            set.authorize_unindexed(&query).allowed,
            "bare decision at {n} must allow"
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.to_async(&rt).iter(|| async {
                let identity = cache
                    .get(&digest("bench", credential.as_bytes()), 1)
                    .unwrap();
                let classification = connector.classify(&input).await.unwrap();
                let query = Query {
                    principal: &identity.principal,
                    principal_attributes: &identity.attributes,
                    principal_parents: &identity.parents,
                    request: &classification.requests[0],
                    gate: &facts,
                };
                assert!(set.authorize(&query).allowed);
            });
        });
        bare.push((n, set, classification, id, facts));
    }
    group.finish();

    let mut group = c.benchmark_group("bare_cedar");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (n, set, classification, id, facts) in &bare {
        let query = Query {
            principal: &id.principal,
            principal_attributes: &id.attributes,
            principal_parents: &id.parents,
            request: &classification.requests[0],
            gate: facts,
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| assert!(set.authorize_unindexed(&query).allowed));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
