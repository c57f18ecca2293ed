//! Differential test of the policy index: on random policy sets (permits and
//! forbids, every scope form, group hierarchies, action groups, conditions
//! that can error at runtime, conditions reading every part of the context)
//! and random requests, the indexed path must give exactly what bare Cedar
//! gives: decision, determining policies and errors. Each request is also
//! followed by "siblings" with the same entities and action but another
//! context and other gate facts (sometimes an invalid context), which take
//! the indexed path's memoized fast path.
//!
//! Seeded: a failure prints the seed; rerun with
//! `INTENTGATE_DIFF_SEED=<seed> cargo test -p intentgate --test policy_differential`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use intentgate::model::{AuthzRequest, EntityRef, GateFacts};
use intentgate::policy::{
    Decision, LoadedPolicies, PolicyText, Query, SchemaFragmentSource, load_texts,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

const SCHEMA: &str = r#"namespace T {
  entity Group in [Group];
  entity User in [Group] = { level: Long, tag?: String };
  entity Service in [Group] = { level: Long, tag?: String };
  entity Folder in [Folder];
  entity Doc in [Folder] = { owner: User, size: Long };
  entity Bucket in [Folder] = { owner: User, size: Long };
  type Ctx = { n: Long, flag: Bool, tag?: String, labels?: Set<String>, gate: Intentgate::Gate };
  action "all";
  action "readGroup" in ["all"];
  action "read", "list" in ["readGroup"] appliesTo {
    principal: [Intentgate::Principal], resource: [Doc, Bucket], context: Ctx
  };
  action "write" in ["all"] appliesTo {
    principal: [Intentgate::Principal], resource: [Doc, Bucket], context: Ctx
  };
  action "admin" appliesTo {
    principal: [Intentgate::Principal], resource: [Doc, Bucket], context: Ctx
  };
  action "audit" appliesTo {
    principal: [Intentgate::Principal], resource: [Doc],
    context: { n: Long, flag: Bool, tag?: String, labels?: Set<String>, gate: Intentgate::Gate, reason: String }
  };
}"#;

const SETS: u64 = 24;
const POLICIES_PER_SET: usize = 40;
const REQUESTS_PER_SET: usize = 60;

const USERS: usize = 5;
const SERVICES: usize = 3;
const GROUPS: usize = 5;
const DOCS: usize = 5;
const BUCKETS: usize = 3;
const FOLDERS: usize = 5;
const ACTIONS: [&str; 7] = [
    "read",
    "list",
    "write",
    "admin",
    "audit",
    "readGroup",
    "all",
];
const REQUEST_ACTIONS: [&str; 4] = ["read", "list", "write", "admin"];

/// Conditions that validate in strict mode. Some error at runtime:
/// overflow for large `n`, and `resource.owner.level` whenever the owner is
/// not one of the request's entities.
const CONDITIONS: [&str; 21] = [
    "context.flag",
    "context has tag && context.tag == \"a\"",
    "context.gate.now > datetime(\"2026-01-01T00:00:30Z\")",
    "context.gate.tls",
    "context.gate.request_id like \"diff-*-1*\"",
    "{ g: context.gate }.g.trust_anchor_age_days > 30",
    "context has gate.peer_ip && context.gate.listener == \"diff\"",
    "{ c: context }.c.n > 1 && context.flag",
    "context has labels && context.labels.contains(\"x\")",
    "context.gate.trust_anchor_age_days < context.n",
    "principal.level > 3",
    "principal has tag && principal.tag == \"a\"",
    "resource.size < context.n",
    "context.gate.trust_anchor_age_days > 30",
    "context.n + 9223372036854775800 > 0",
    "resource.owner == principal",
    "resource.owner.level > 2",
    "principal in T::Group::\"g2\"",
    "context.gate.peer_ip.isLoopback()",
    "principal.level * context.n > 10",
    "resource in T::Folder::\"f1\" || context.n == 3",
];

fn user_or_service(rng: &mut StdRng) -> String {
    if rng.random_bool(0.7) {
        format!("T::User::\"u{}\"", rng.random_range(0..USERS))
    } else {
        format!("T::Service::\"s{}\"", rng.random_range(0..SERVICES))
    }
}

fn doc_or_bucket(rng: &mut StdRng) -> String {
    if rng.random_bool(0.6) {
        format!("T::Doc::\"d{}\"", rng.random_range(0..DOCS))
    } else {
        format!("T::Bucket::\"b{}\"", rng.random_range(0..BUCKETS))
    }
}

fn principal_scope(rng: &mut StdRng) -> String {
    let ty = *["T::User", "T::Service"].choose(rng).unwrap();
    match rng.random_range(0..7) {
        0 | 1 => "principal".to_owned(),
        2 => format!("principal == {}", user_or_service(rng)),
        3 => format!(
            "principal in T::Group::\"g{}\"",
            rng.random_range(0..GROUPS)
        ),
        4 => format!("principal is {ty}"),
        5 => format!(
            "principal is {ty} in T::Group::\"g{}\"",
            rng.random_range(0..GROUPS)
        ),
        _ => format!("principal in {}", user_or_service(rng)),
    }
}

fn action_scope(rng: &mut StdRng) -> String {
    let action = |rng: &mut StdRng| format!("T::Action::\"{}\"", ACTIONS.choose(rng).unwrap());
    match rng.random_range(0..4) {
        0 => "action".to_owned(),
        1 => format!("action == {}", action(rng)),
        2 => format!("action in [{}]", action(rng)),
        _ => format!("action in [{}, {}]", action(rng), action(rng)),
    }
}

fn resource_scope(rng: &mut StdRng) -> String {
    let ty = *["T::Doc", "T::Bucket"].choose(rng).unwrap();
    match rng.random_range(0..7) {
        0 | 1 => "resource".to_owned(),
        2 => format!("resource == {}", doc_or_bucket(rng)),
        3 => format!(
            "resource in T::Folder::\"f{}\"",
            rng.random_range(0..FOLDERS)
        ),
        4 => format!("resource is {ty}"),
        5 => format!(
            "resource is {ty} in T::Folder::\"f{}\"",
            rng.random_range(0..FOLDERS)
        ),
        _ => format!("resource in {}", doc_or_bucket(rng)),
    }
}

fn policy(rng: &mut StdRng, n: usize) -> String {
    let effect = if rng.random_bool(0.75) {
        "permit"
    } else {
        "forbid"
    };
    let mut text = format!("@id(\"p{n}\")\n");
    if rng.random_bool(0.5) {
        text.push_str(&format!("@role(\"r{}\")\n", rng.random_range(0..3)));
    }
    text.push_str(&format!(
        "{effect} (\n  {},\n  {},\n  {}\n)",
        principal_scope(rng),
        action_scope(rng),
        resource_scope(rng)
    ));
    for _ in 0..rng.random_range(0..3) {
        let keyword = if rng.random_bool(0.7) {
            "when"
        } else {
            "unless"
        };
        text.push_str(&format!(
            "\n{keyword} {{ {} }}",
            CONDITIONS.choose(rng).unwrap()
        ));
    }
    text.push_str(";\n\n");
    text
}

fn subset(rng: &mut StdRng, ty: &str, prefix: &str, count: usize) -> Vec<EntityRef> {
    (0..count)
        .filter(|_| rng.random_bool(0.3))
        .map(|i| EntityRef::new(ty, format!("{prefix}{i}")))
        .collect()
}

struct Request {
    principal: EntityRef,
    attributes: serde_json::Value,
    parents: Vec<EntityRef>,
    request: AuthzRequest,
    gate: GateFacts,
}

fn request(rng: &mut StdRng) -> Request {
    let principal = if rng.random_bool(0.7) {
        EntityRef::new("T::User", format!("u{}", rng.random_range(0..USERS)))
    } else {
        EntityRef::new("T::Service", format!("s{}", rng.random_range(0..SERVICES)))
    };
    let mut attributes = json!({ "level": rng.random_range(0..8) });
    if rng.random_bool(0.5) {
        attributes["tag"] = json!(*["a", "b"].choose(rng).unwrap());
    }
    let resource = if rng.random_bool(0.6) {
        EntityRef::new("T::Doc", format!("d{}", rng.random_range(0..DOCS)))
    } else {
        EntityRef::new("T::Bucket", format!("b{}", rng.random_range(0..BUCKETS)))
    };
    Request {
        principal,
        attributes,
        parents: subset(rng, "T::Group", "g", GROUPS),
        request: AuthzRequest {
            action: EntityRef::new("T::Action", *REQUEST_ACTIONS.choose(rng).unwrap()),
            resource,
            resource_attributes: json!({
                "owner": { "type": "T::User", "id": format!("u{}", rng.random_range(0..USERS)) },
                "size": rng.random_range(0..6),
            }),
            resource_parents: subset(rng, "T::Folder", "f", FOLDERS),
            context: context(rng, false),
        },
        gate: gate(rng, "diff-0-0".into()),
    }
}

/// The connector's context; with `invalid`, sometimes one the schema
/// rejects.
fn context(rng: &mut StdRng, invalid: bool) -> serde_json::Map<String, serde_json::Value> {
    let mut context = serde_json::Map::new();
    context.insert(
        "n".into(),
        json!(*[-2, 0, 1, 3, 7, 8, 100].choose(rng).unwrap()),
    );
    context.insert("flag".into(), json!(rng.random_bool(0.5)));
    if rng.random_bool(0.3) {
        context.insert("tag".into(), json!(*["a", "b"].choose(rng).unwrap()));
    }
    if rng.random_bool(0.3) {
        let labels = match rng.random_range(0..4) {
            0 => json!([]),
            1 => json!(["x"]),
            2 => json!(["y", "y", "x"]),
            _ => json!(["y", "y"]),
        };
        context.insert("labels".into(), labels);
    }
    if invalid && rng.random_bool(0.2) {
        match rng.random_range(0..7) {
            4 => {
                // A set whose elements are not all strings.
                context.insert("labels".into(), json!(["x", "x", 1]));
            }
            0 => {
                context.insert("n".into(), json!("3"));
            }
            1 => {
                context.remove("flag");
            }
            6 => {
                context.insert("flag".into(), json!(0));
            }
            5 => {
                // Same length, other name.
                if let Some(flag) = context.remove("flag") {
                    context.insert("flaG".into(), flag);
                }
            }
            2 => {
                context.insert("extra".into(), json!(1));
            }
            _ => {
                // The host's gate wins over a connector's.
                context.insert("gate".into(), json!({ "tls": false }));
            }
        }
    }
    context
}

fn gate(rng: &mut StdRng, request_id: String) -> GateFacts {
    GateFacts {
        request_id,
        listener: (*["diff", "other"].choose(rng).unwrap()).into(),
        peer_ip: if rng.random_bool(0.5) {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        },
        identity_provider: "diff".into(),
        trust_anchor: "diff".into(),
        trust_anchor_age_days: rng.random_range(0..60),
        now_unix: 1_767_225_600 + *[0, 30, 60].choose(rng).unwrap(),
        tls: rng.random_bool(0.8),
    }
}

fn load(texts: &str) -> LoadedPolicies {
    let fragments = [SchemaFragmentSource {
        origin: "differential test schema".into(),
        text: SCHEMA.into(),
    }];
    let files = [PolicyText {
        path: PathBuf::from("random.cedar"),
        text: texts.to_owned(),
    }];
    match load_texts(&fragments, &["T::User".into(), "T::Service".into()], &files) {
        Ok(loaded) => loaded,
        Err(errors) => panic!(
            "generated policies do not validate:\n{}\n--- policies ---\n{texts}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[derive(Default)]
struct Coverage {
    allowed: usize,
    denied_by_forbid: usize,
    default_deny: usize,
    with_errors: usize,
    invalid: usize,
}

const SIBLINGS: usize = 4;

fn run_set(seed: u64, coverage: &mut Coverage) {
    let mut rng = StdRng::seed_from_u64(seed);
    let texts: String = (0..POLICIES_PER_SET).map(|n| policy(&mut rng, n)).collect();
    let loaded = load(&texts);
    for i in 0..REQUESTS_PER_SET {
        let mut r = request(&mut rng);
        r.gate.request_id = format!("diff-{seed}-{i}");
        let bare = check(&loaded, &r, seed, i, "first", &texts);
        tally(&bare, coverage);
        // The same request again: served from the memo.
        r.gate.request_id = format!("diff-{seed}-{i}-again");
        check(&loaded, &r, seed, i, "cached", &texts);
        // Same entities, another context and gate, sometimes another
        // action (`audit` has its own context type and resource types).
        for sibling in 0..SIBLINGS {
            r.request.context = context(&mut rng, true);
            if rng.random_bool(0.3) {
                let action = if rng.random_bool(0.5) {
                    "audit"
                } else {
                    *REQUEST_ACTIONS.choose(&mut rng).unwrap()
                };
                r.request.action = EntityRef::new("T::Action", action);
            }
            if r.request.action.id == "audit" && rng.random_bool(0.7) {
                r.request.context.insert("reason".into(), json!("why"));
            }
            r.gate = gate(&mut rng, format!("diff-{seed}-{i}-{sibling}"));
            let bare = check(&loaded, &r, seed, i, "sibling", &texts);
            tally(&bare, coverage);
        }
    }
}

/// Asserts the indexed path agrees with bare Cedar on `r`; returns the
/// decision.
fn check(
    loaded: &LoadedPolicies,
    r: &Request,
    seed: u64,
    i: usize,
    pass: &str,
    texts: &str,
) -> Decision {
    let q = Query {
        principal: &r.principal,
        principal_attributes: &r.attributes,
        principal_parents: &r.parents,
        request: &r.request,
        gate: &r.gate,
    };
    let bare = loaded.authorize_unindexed(&q);
    let indexed = loaded.authorize(&q);
    assert_eq!(
        indexed,
        bare,
        "seed {seed}, request {i} ({pass}): indexed and bare Cedar differ\n\
         principal {} parents {:?} attrs {}\naction {} resource {} parents {:?} attrs {}\ncontext {:?}\ngate {:?}\n\
         --- policies ---\n{texts}",
        r.principal,
        r.parents,
        r.attributes,
        r.request.action,
        r.request.resource,
        r.request.resource_parents,
        r.request.resource_attributes,
        r.request.context,
        r.gate,
    );
    bare
}

fn tally(d: &Decision, coverage: &mut Coverage) {
    if d.errors.iter().any(|e| e.starts_with("invalid")) {
        coverage.invalid += 1;
        return;
    }
    if !d.errors.is_empty() {
        coverage.with_errors += 1;
    }
    if d.allowed {
        coverage.allowed += 1;
    } else if d.determining.is_empty() {
        coverage.default_deny += 1;
    } else if d.errors.is_empty() {
        coverage.denied_by_forbid += 1;
    }
}

#[test]
fn indexed_matches_bare_cedar() {
    let base = std::env::var("INTENTGATE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1d_c0de);
    let mut coverage = Coverage::default();
    for set in 0..SETS {
        run_set(base + set, &mut coverage);
    }
    // The test means something only if every outcome occurred.
    let Coverage {
        allowed,
        denied_by_forbid,
        default_deny,
        with_errors,
        invalid,
    } = coverage;
    eprintln!(
        "allowed {allowed}, denied by forbid {denied_by_forbid}, default deny {default_deny}, errors {with_errors}, invalid requests {invalid}"
    );
    assert!(
        allowed > 50
            && denied_by_forbid > 50
            && default_deny > 50
            && with_errors > 50
            && invalid > 50,
        "too little variety"
    );
}
