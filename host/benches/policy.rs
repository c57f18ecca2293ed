//! Policy engine benchmark: the indexed path against bare Cedar on the same
//! query, for 10, 1,000 and 10,000 policies of the brief's shape, plus the
//! cost of loading (parse + validate + index) 10,000 policies.
//!
//! Run: `cargo bench -p intentgate --bench policy`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

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

fn policy_text(n: usize) -> String {
    let mut text = String::with_capacity(n * 240);
    for k in 0..n {
        text.push_str(&format!(
            "@id(\"p{k}\")\n@database_role(\"role_{k}\")\npermit (\n  principal == Aws::Role::\"{}\",\n  action in [Spanner::Action::\"read\"],\n  resource in Spanner::Database::\"db-{k}\"\n);\n\n",
            role(k)
        ));
    }
    text.push_str(
        "@id(\"forbid-stale-trust\")\nforbid (principal, action, resource)\nwhen { context.gate.trust_anchor_age_days > 30 };\n",
    );
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
    [PolicyText {
        path: PathBuf::from("bench.cedar"),
        text: policy_text(n),
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
    for n in [10, 1_000, 10_000] {
        let policies = load(&files(n));
        let fixture = Fixture::new(n);
        let q = fixture.query();
        // Both paths must agree on the answer being measured.
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
        group.bench_with_input(BenchmarkId::new("indexed", n), &q, |b, q| {
            b.iter(|| policies.authorize(black_box(q)))
        });
        group.bench_with_input(BenchmarkId::new("unindexed", n), &q, |b, q| {
            b.iter(|| policies.authorize_unindexed(black_box(q)))
        });
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

criterion_group!(benches, authorize, load_10k);
criterion_main!(benches);
