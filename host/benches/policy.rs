//! Policy engine benchmark: the indexed path against bare Cedar on the same
//! query, for 10, 1,000 and 10,000 policies of the brief's shape, plus the
//! cost of loading (parse + validate + index) 10,000 policies.
//!
//! Every iteration is a new request as the proxy makes them: a fresh
//! 36-character request id (a UUID in production) and a clock that moves
//! on, so nothing can be served from a cache keyed by the whole request.
//! Rewriting the id costs about 30 ns of each iteration.
//! `authorize/indexed-ext-fields/10000` swaps the forbid for one that also
//! reads `context.gate.peer_ip` and `context.gate.now`, whose `ipaddr` and
//! `datetime` values Cedar parses on every request that reads them.
//!
//! `authorize-per-call` times each call of the indexed path at 10,000
//! policies on its own (criterion reports means) and prints p50/p99/p99.9.
//!
//! Run: `cargo bench -p intentgate --bench policy`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use intentgate::model::{AuthzRequest, EntityRef, GateFacts};
use intentgate::policy::{LoadedPolicies, PolicyText, Query, SchemaFragmentSource, load_texts};
use serde_json::json;

const AWS: &str = "namespace Aws { entity Account; entity Role in [Account]; }";
const SPANNER: &str = r#"namespace Spanner {
  entity Database;
  action "all";
  action "read", "write" in ["all"] appliesTo {
    principal: [Intentgate::Principal], resource: [Database], context: { gate: Intentgate::Gate }
  };
}"#;

fn role(k: usize) -> String {
    format!("arn:aws:iam::111122223333:role/app-{k}")
}

const FORBID_STALE: &str = "context.gate.trust_anchor_age_days > 30";
const FORBID_EXT: &str = "context.gate.trust_anchor_age_days > 30 || !context.gate.peer_ip.isInRange(ip(\"127.0.0.0/8\")) || context.gate.now < datetime(\"2025-01-01\")";

fn policy_text_with(n: usize, forbid_when: &str) -> String {
    let mut text = String::with_capacity(n * 240);
    for k in 0..n {
        text.push_str(&format!(
            "@id(\"p{k}\")\n@database_role(\"role_{k}\")\npermit (\n  principal == Aws::Role::\"{}\",\n  action in [Spanner::Action::\"read\"],\n  resource in Spanner::Database::\"db-{k}\"\n);\n\n",
            role(k)
        ));
    }
    text.push_str(&format!(
        "@id(\"forbid-stale-trust\")\nforbid (principal, action, resource)\nwhen {{ {forbid_when} }};\n"
    ));
    text
}

fn fragments() -> [SchemaFragmentSource; 2] {
    [
        SchemaFragmentSource {
            origin: "bench aws".into(),
            text: AWS.into(),
        },
        SchemaFragmentSource {
            origin: "bench spanner".into(),
            text: SPANNER.into(),
        },
    ]
}

fn load(files: &[PolicyText]) -> LoadedPolicies {
    load_texts(&fragments(), &["Aws::Role".into()], files).unwrap()
}

fn files(n: usize) -> [PolicyText; 1] {
    files_with(n, FORBID_STALE)
}

fn files_with(n: usize, forbid_when: &str) -> [PolicyText; 1] {
    [PolicyText {
        path: PathBuf::from("bench.cedar"),
        text: policy_text_with(n, forbid_when),
    }]
}

struct Fixture {
    principal: EntityRef,
    attributes: serde_json::Value,
    parents: Vec<EntityRef>,
    request: AuthzRequest,
    gate: GateFacts,
}

impl Fixture {
    /// The allow case: K = N/2 reads its own database.
    fn new(n: usize) -> Self {
        let k = n / 2;
        Self {
            principal: EntityRef::new("Aws::Role", role(k)),
            attributes: json!({}),
            parents: vec![EntityRef::new("Aws::Account", "111122223333")],
            request: AuthzRequest {
                action: EntityRef::new("Spanner::Action", "read"),
                resource: EntityRef::new("Spanner::Database", format!("db-{k}")),
                resource_attributes: json!({}),
                resource_parents: Vec::new(),
                context: serde_json::Map::new(),
            },
            gate: GateFacts {
                request_id: "bench".into(),
                listener: "bench".into(),
                peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                identity_provider: "aws-iam".into(),
                trust_anchor: "111122223333".into(),
                trust_anchor_age_days: 5,
                now_unix: 1_767_225_600,
                tls: true,
            },
        }
    }

    /// Turns the fixture into the `i`-th request: a new request id, and a
    /// clock that ticks every 100,000 requests.
    fn next(&mut self, i: u64) {
        self.gate.request_id.clear();
        let _ = write!(self.gate.request_id, "01890a5d-ac96-774b-bcce-{i:012x}");
        self.gate.now_unix = 1_767_225_600 + i / 100_000;
    }

    fn query(&self) -> Query<'_> {
        Query {
            principal: &self.principal,
            principal_attributes: &self.attributes,
            principal_parents: &self.parents,
            request: &self.request,
            gate: &self.gate,
        }
    }
}

fn authorize(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let cases = [
        ("", 10, FORBID_STALE),
        ("", 1_000, FORBID_STALE),
        ("", 10_000, FORBID_STALE),
        ("-ext-fields", 10_000, FORBID_EXT),
    ];
    for (variant, n, forbid_when) in cases {
        let policies = load(&files_with(n, forbid_when));
        let mut fixture = Fixture::new(n);
        // Both paths must agree on the answer being measured, on the first
        // request and on later ones (which take the fast path).
        for i in 0..3 {
            fixture.next(i);
            let q = fixture.query();
            let indexed = policies.authorize(&q);
            assert!(indexed.allowed, "{indexed:?}");
            assert_eq!(
                indexed.annotations["database_role"]
                    .iter()
                    .next()
                    .map(String::as_str),
                Some(&*format!("role_{}", n / 2))
            );
            assert_eq!(indexed, policies.authorize_unindexed(&q));
        }
        // And on a stale trust anchor, which the forbid denies.
        fixture.gate.trust_anchor_age_days = 45;
        for _ in 0..2 {
            let denied = policies.authorize(&fixture.query());
            assert_eq!(denied.determining, ["forbid-stale-trust"], "{denied:?}");
            assert_eq!(denied, policies.authorize_unindexed(&fixture.query()));
        }
        fixture.gate.trust_anchor_age_days = 5;

        group.bench_function(BenchmarkId::new(format!("indexed{variant}"), n), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                fixture.next(i);
                policies.authorize(black_box(&fixture.query()))
            })
        });
        if variant.is_empty() {
            group.bench_function(BenchmarkId::new("unindexed", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    fixture.next(i);
                    policies.authorize_unindexed(black_box(&fixture.query()))
                })
            });
        }
    }
    group.finish();
}

fn authorize_per_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize-per-call");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (variant, forbid_when) in [
        ("indexed", FORBID_STALE),
        ("indexed-ext-fields", FORBID_EXT),
    ] {
        let n = 10_000;
        let policies = load(&files_with(n, forbid_when));
        let mut fixture = Fixture::new(n);
        let mut calls: Vec<Duration> = Vec::new();
        let mut i = 0;
        group.bench_function(BenchmarkId::new(variant, n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    fixture.next(i);
                    let q = fixture.query();
                    let start = Instant::now();
                    let decision = policies.authorize(black_box(&q));
                    let took = start.elapsed();
                    assert!(black_box(decision).allowed);
                    total += took;
                    calls.push(took);
                }
                total
            })
        });
        if !calls.is_empty() {
            calls.sort_unstable();
            let at = |q: f64| calls[((calls.len() - 1) as f64 * q) as usize];
            println!(
                "authorize-per-call/{variant}/{n}: p50 {:?}  p99 {:?}  p99.9 {:?}  ({} calls)",
                at(0.5),
                at(0.99),
                at(0.999),
                calls.len()
            );
        }
    }
    group.finish();
}

fn load_10k(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let files = files(10_000);
    group.bench_function("10000", |b| b.iter(|| load(black_box(&files))));
    group.finish();
}

criterion_group!(benches, authorize, authorize_per_call, load_10k);
criterion_main!(benches);
