//! Unit tests of the policy engine: diagnostics with file and line,
//! placeholder replacement, fail-closed decisions, annotations, reload and
//! policy test files. The differential test (indexed vs bare Cedar) is in
//! `host/tests/policy_differential.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::model::{AuthzRequest, EntityRef, GateFacts};

const AWS: &str = r#"namespace Aws {
  entity Account;
  entity Role in [Account] = { level: Long, task_id?: String };
}"#;

const SPANNER: &str = r#"namespace Spanner {
  entity Instance;
  entity Database in [Instance];
  action "all";
  action "read", "write" in ["all"] appliesTo {
    principal: [Intentgate::Principal],
    resource: [Database],
    context: { gate: Intentgate::Gate, n: Long, client?: ipaddr }
  };
}"#;

fn fragments() -> Vec<SchemaFragmentSource> {
    vec![
        SchemaFragmentSource {
            origin: "plugin `aws-iam`".into(),
            text: AWS.into(),
        },
        SchemaFragmentSource {
            origin: "plugin `spanner`".into(),
            text: SPANNER.into(),
        },
    ]
}

fn principal_types() -> Vec<String> {
    vec!["Aws::Role".into()]
}

fn file(path: &str, text: &str) -> PolicyText {
    PolicyText {
        path: PathBuf::from(path),
        text: text.into(),
    }
}

fn load_ok(files: &[PolicyText]) -> LoadedPolicies {
    match load_texts(&fragments(), &principal_types(), files) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("load failed:\n{}", render(&errors)),
    }
}

fn load_err(files: &[PolicyText]) -> Vec<PolicyDiagnostic> {
    match load_texts(&fragments(), &principal_types(), files) {
        Ok(_) => panic!("load unexpectedly succeeded"),
        Err(errors) => errors,
    }
}

fn render(errors: &[PolicyDiagnostic]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn gate(age_days: i64) -> GateFacts {
    GateFacts {
        request_id: "r-1".into(),
        listener: "test".into(),
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        identity_provider: "aws-iam".into(),
        trust_anchor: "111122223333".into(),
        trust_anchor_age_days: age_days,
        now_unix: 1_767_225_600,
        tls: true,
    }
}

/// A request by role `role` (level 5) to `action` on database `db` with
/// context `n`.
struct Req {
    principal: EntityRef,
    attrs: serde_json::Value,
    parents: Vec<EntityRef>,
    request: AuthzRequest,
    gate: GateFacts,
}

fn req(role: &str, action: &str, db: &str, n: i64) -> Req {
    let mut context = serde_json::Map::new();
    context.insert("n".into(), json!(n));
    Req {
        principal: EntityRef::new("Aws::Role", role),
        attrs: json!({ "level": 5 }),
        parents: vec![EntityRef::new("Aws::Account", "111122223333")],
        request: AuthzRequest {
            action: EntityRef::new("Spanner::Action", action),
            resource: EntityRef::new("Spanner::Database", db),
            resource_attributes: json!({}),
            resource_parents: vec![EntityRef::new("Spanner::Instance", "i")],
            context,
        },
        gate: gate(5),
    }
}

impl Req {
    fn query(&self) -> Query<'_> {
        Query {
            principal: &self.principal,
            principal_attributes: &self.attrs,
            principal_parents: &self.parents,
            request: &self.request,
            gate: &self.gate,
        }
    }
}

/// Both paths, asserting they agree.
fn decide(p: &LoadedPolicies, r: &Req) -> Decision {
    let indexed = p.authorize(&r.query());
    assert_eq!(
        indexed,
        p.authorize_unindexed(&r.query()),
        "indexed and bare decisions differ"
    );
    indexed
}

const READ_ORDERS: &str = r#"
@id("payments-read-orders")
@database_role("orders_reader")
permit (
  principal == Aws::Role::"payments",
  action in [Spanner::Action::"read"],
  resource in Spanner::Database::"orders"
);
"#;

#[test]
fn missing_id_is_an_error_naming_file_and_line() {
    let errors = load_err(&[file(
        "policies/a.cedar",
        "@id(\"ok\")\npermit(principal, action, resource);\n\n// no id here\npermit(principal, action, resource);\n",
    )]);
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let e = &errors[0];
    assert_eq!(e.file.as_deref(), Some(Path::new("policies/a.cedar")));
    assert_eq!((e.line, e.column), (Some(5), Some(1)));
    assert!(
        e.to_string()
            .starts_with("policies/a.cedar:5:1: policy has no `@id` annotation"),
        "{e}"
    );
    assert!(e.help.as_deref().is_some_and(|h| h.contains("@id(")), "{e}");
}

#[test]
fn duplicate_id_names_both_places() {
    let errors = load_err(&[
        file(
            "a.cedar",
            "@id(\"same\")\npermit(principal, action, resource);\n",
        ),
        file(
            "b.cedar",
            "\n\n@id(\"same\") forbid(principal, action, resource);\n",
        ),
    ]);
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let text = errors[0].to_string();
    assert!(
        text.starts_with("b.cedar:3:1: duplicate policy id `same`"),
        "{text}"
    );
    assert!(text.contains("a.cedar:1:1"), "{text}");
}

#[test]
fn syntax_error_reports_file_and_line() {
    let errors = load_err(&[
        file("good.cedar", READ_ORDERS),
        file(
            "bad.cedar",
            "@id(\"x\")\npermit(principal, action, resource)\nwhen { 1 + };\n",
        ),
    ]);
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let e = &errors[0];
    assert_eq!(e.file.as_deref(), Some(Path::new("bad.cedar")));
    assert_eq!((e.line, e.column), (Some(3), Some(12)), "{e}");
    assert!(e.message.contains("unexpected token"), "{e}");
}

#[test]
fn validation_error_reports_file_and_line() {
    let errors = load_err(&[
        file("good.cedar", READ_ORDERS),
        file(
            "bad.cedar",
            "// header\n@id(\"typo\")\npermit(principal is Aws::Role, action, resource)\nwhen {\n  principal.levle > 3\n};\n",
        ),
    ]);
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let e = &errors[0];
    assert_eq!(e.file.as_deref(), Some(Path::new("bad.cedar")));
    assert_eq!((e.line, e.column), (Some(5), Some(3)), "{e}");
    assert!(
        e.message.contains("for policy `typo`") && e.message.contains("levle"),
        "{e}"
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `level`?"), "{e}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let errors = load_err(&[
        file("a.cedar", "permit(principal, action, resource);\n"),
        file(
            "b.cedar",
            "@id(\"b\") permit(principal, action, resource) when { principal.nope };\n",
        ),
        file(
            "c.cedar",
            "@id(\"c\") permit(principal, action, resource) when { ( };\n",
        ),
    ]);
    let files: Vec<_> = errors.iter().filter_map(|e| e.file.clone()).collect();
    for name in ["a.cedar", "b.cedar", "c.cedar"] {
        assert!(
            files.contains(&PathBuf::from(name)),
            "no error for {name}:\n{}",
            render(&errors)
        );
    }
}

#[test]
fn templates_are_rejected_with_a_clear_message() {
    let errors = load_err(&[file(
        "t.cedar",
        "\n@id(\"t\")\npermit(principal == ?principal, action, resource);\n",
    )]);
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert!(
        errors[0]
            .to_string()
            .starts_with("t.cedar:2:1: templates are not supported yet"),
        "{}",
        errors[0]
    );
}

#[test]
fn schema_syntax_error_names_fragment_and_line() {
    let mut frags = fragments();
    frags.push(SchemaFragmentSource {
        origin: "plugin `broken`".into(),
        text: "namespace Broken {\n  entity A;\n  entity B = { x: Long }\n}\n".into(),
    });
    let Err(errors) = load_texts(&frags, &principal_types(), &[]) else {
        panic!("broken schema loaded")
    };
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let e = &errors[0];
    assert_eq!(e.file.as_deref(), Some(Path::new("plugin `broken`")));
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn schema_merge_error_names_the_fragment() {
    let mut frags = fragments();
    frags.push(SchemaFragmentSource {
        origin: "plugin `http`".into(),
        text: "namespace Http {\n  entity Route in [Missing];\n}\n".into(),
    });
    let Err(errors) = load_texts(&frags, &principal_types(), &[]) else {
        panic!("broken schema loaded")
    };
    let e = &errors[0];
    assert_eq!(e.file.as_deref(), Some(Path::new("plugin `http`")), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("Missing"), "{e}");
}

#[test]
fn placeholder_principal_is_replaced() {
    let policy = file(
        "p.cedar",
        "@id(\"p\") permit(principal is Aws::Role, action == Spanner::Action::\"read\", resource);\n",
    );
    // With the identity plugin's principal type, the policy validates and
    // the request is valid.
    let loaded = load_ok(std::slice::from_ref(&policy));
    let d = decide(&loaded, &req("anyone", "read", "orders", 1));
    assert!(d.allowed, "{d:?}");

    // Without it, nothing can be the principal of `read`: the validator
    // warns that the policy can never apply, the loader says why, and the
    // request is invalid.
    let loaded = match load_texts(&fragments(), &[], std::slice::from_ref(&policy)) {
        Ok(l) => l,
        Err(e) => panic!("{}", render(&e)),
    };
    let warnings = render(loaded.warnings());
    assert!(
        warnings.contains("no identity plugin is loaded"),
        "{warnings}"
    );
    assert!(warnings.contains("p.cedar:1:"), "{warnings}");
    let d = decide(&loaded, &req("anyone", "read", "orders", 1));
    assert!(!d.allowed && d.errors[0].starts_with("invalid"), "{d:?}");

    // A principal type no fragment declares is an error.
    let Err(errors) = load_texts(&fragments(), &["Oidc::Subject".into()], &[]) else {
        panic!("undeclared type")
    };
    assert!(
        errors[0]
            .message
            .contains("`Oidc::Subject` is not declared"),
        "{}",
        render(&errors)
    );
}

#[test]
fn allows_only_what_a_policy_names() {
    let loaded = load_ok(&[file("p.cedar", READ_ORDERS)]);
    assert!(decide(&loaded, &req("payments", "read", "orders", 1)).allowed);
    assert!(!decide(&loaded, &req("payments", "write", "orders", 1)).allowed);
    assert!(!decide(&loaded, &req("payments", "read", "billing", 1)).allowed);
    assert!(!decide(&loaded, &req("other", "read", "orders", 1)).allowed);
}

#[test]
fn annotations_of_determining_permits_are_returned() {
    let loaded = load_ok(&[file(
        "p.cedar",
        &format!(
            "{READ_ORDERS}\n@id(\"also\") @database_role(\"orders_reader\") @owner(\"team-a\")\npermit(principal, action == Spanner::Action::\"read\", resource);\n@id(\"unrelated\") @database_role(\"admin\") permit(principal, action == Spanner::Action::\"write\", resource);\n"
        ),
    )]);
    let d = decide(&loaded, &req("payments", "read", "orders", 1));
    assert!(d.allowed);
    assert_eq!(d.determining, ["also", "payments-read-orders"]);
    assert_eq!(
        d.annotations.get("database_role"),
        Some(&BTreeSet::from(["orders_reader".to_owned()]))
    );
    assert_eq!(
        d.annotations.get("owner"),
        Some(&BTreeSet::from(["team-a".to_owned()]))
    );
    assert!(!d.annotations.contains_key("id"));
}

#[test]
fn forbid_beats_permit() {
    let loaded = load_ok(&[file(
        "p.cedar",
        &format!(
            "{READ_ORDERS}\n@id(\"stale-trust\") @reason(\"trust anchor not reviewed\")\nforbid(principal, action, resource) when {{ context.gate.trust_anchor_age_days > 30 }};\n"
        ),
    )]);
    let mut r = req("payments", "read", "orders", 1);
    assert!(decide(&loaded, &r).allowed);
    r.gate.trust_anchor_age_days = 31;
    let d = decide(&loaded, &r);
    assert!(!d.allowed);
    assert_eq!(d.determining, ["stale-trust"]);
    assert!(d.errors.is_empty());
    assert!(d.annotations["reason"].contains("trust anchor not reviewed"));
}

#[test]
fn evaluation_error_denies() {
    // Cedar skips a policy that errors; the permit alone would allow.
    let loaded = load_ok(&[file(
        "p.cedar",
        &format!(
            "{READ_ORDERS}\n@id(\"overflow\") forbid(principal, action, resource) when {{ context.n + 9223372036854775807 > 0 }};\n"
        ),
    )]);
    let d = decide(&loaded, &req("payments", "read", "orders", 0));
    assert!(!d.allowed, "the forbid is satisfied: {d:?}");
    // n = 0 does not overflow; the forbid is satisfied (0 + max > 0).
    assert_eq!(d.determining, ["overflow"]);

    let d = decide(&loaded, &req("payments", "read", "orders", 1));
    assert!(!d.allowed, "an erroring forbid must deny: {d:?}");
    assert_eq!(
        d.determining,
        ["payments-read-orders"],
        "cedar itself said allow"
    );
    assert_eq!(d.errors.len(), 1, "{d:?}");
    assert!(
        d.errors[0].contains("`overflow`") && d.errors[0].contains("overflow"),
        "{d:?}"
    );
}

#[test]
fn invalid_requests_are_denied_with_the_reason() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"all\") permit(principal, action, resource);\n",
    )]);
    let ok = req("payments", "read", "orders", 1);
    assert!(decide(&loaded, &ok).allowed);

    let mut r = req("payments", "read", "orders", 1);
    r.attrs = json!({ "level": "high" });
    let d = decide(&loaded, &r);
    assert!(
        !d.allowed && d.errors[0].starts_with("invalid entities"),
        "{d:?}"
    );

    let mut r = req("payments", "read", "orders", 1);
    r.request.context.remove("n");
    let d = decide(&loaded, &r);
    assert!(
        !d.allowed && d.errors[0].starts_with("invalid context"),
        "{d:?}"
    );

    let d = decide(&loaded, &req("payments", "drop", "orders", 1));
    assert!(
        !d.allowed && d.errors[0].contains("is not declared in the schema"),
        "{d:?}"
    );

    let mut r = req("payments", "read", "orders", 1);
    r.request.resource = EntityRef::new("Spanner::Instance", "i");
    let d = decide(&loaded, &r);
    assert!(!d.allowed && !d.errors.is_empty(), "{d:?}");

    // A connector cannot forge the host's facts.
    let mut r = req("payments", "read", "orders", 1);
    r.request
        .context
        .insert("gate".into(), json!({ "trust_anchor_age_days": 0 }));
    assert!(decide(&loaded, &r).allowed);
}

#[test]
fn schema_directed_context_values_still_work() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"internal\") permit(principal, action, resource) when { context has client && context.client.isInRange(ip(\"10.0.0.0/8\")) };\n",
    )]);
    // The connector writes an `ipaddr` as a plain string: the literal
    // reading fails validation and the schema-directed one is used.
    for (client, allowed) in [(json!("10.1.2.3"), true), (json!("192.168.0.1"), false)] {
        let mut r = req("payments", "read", "orders", 1);
        r.request.context.insert("client".into(), client);
        let d = decide(&loaded, &r);
        assert_eq!(d.allowed, allowed, "{d:?}");
        assert!(d.errors.is_empty(), "{d:?}");
    }
    let mut r = req("payments", "read", "orders", 1);
    r.request.context.insert(
        "client".into(),
        json!({ "__extn": { "fn": "ip", "arg": "10.9.9.9" } }),
    );
    assert!(decide(&loaded, &r).allowed);
    let mut r = req("payments", "read", "orders", 1);
    r.request
        .context
        .insert("client".into(), json!("not an ip"));
    let d = decide(&loaded, &r);
    assert!(
        !d.allowed && d.errors[0].starts_with("invalid context"),
        "{d:?}"
    );
}

#[test]
fn a_validated_request_does_not_vouch_for_a_different_context() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"all\") permit(principal, action, resource);\n@id(\"small\") forbid(principal, action, resource) when { context.n < 0 };\n",
    )]);
    for _ in 0..3 {
        assert!(decide(&loaded, &req("payments", "read", "orders", 1)).allowed);
    }
    let mut r = req("payments", "read", "orders", 1);
    r.request.context.remove("n");
    let d = decide(&loaded, &r);
    assert!(!d.allowed && d.errors[0].starts_with("invalid"), "{d:?}");
    r.request.context.insert("n".into(), json!("1"));
    let d = decide(&loaded, &r);
    assert!(!d.allowed && d.errors[0].starts_with("invalid"), "{d:?}");
    r.request.context.insert("n".into(), json!(1));
    r.request.context.insert("m".into(), json!(1));
    let d = decide(&loaded, &r);
    assert!(!d.allowed && d.errors[0].starts_with("invalid"), "{d:?}");
    // Other values of the same shape take the memo and are evaluated.
    let d = decide(&loaded, &req("payments", "read", "orders", -1));
    assert_eq!(d.determining, ["small"], "{d:?}");
    assert!(decide(&loaded, &req("payments", "read", "orders", 2)).allowed);
    // An action the pair was not validated for.
    let d = decide(&loaded, &req("payments", "drop", "orders", 1));
    assert!(!d.allowed && !d.errors.is_empty(), "{d:?}");
}

#[test]
fn schema_directed_contexts_are_validated_every_time() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"internal\") permit(principal, action, resource) when { context has client && context.client.isInRange(ip(\"10.0.0.0/8\")) };\n",
    )]);
    for _ in 0..2 {
        for (client, allowed) in [
            (json!("10.1.2.3"), true),
            (json!("192.168.0.1"), false),
            (json!("10.1.2.4"), true),
        ] {
            let mut r = req("payments", "read", "orders", 1);
            r.request.context.insert("client".into(), client);
            let d = decide(&loaded, &r);
            assert_eq!(d.allowed, allowed, "{d:?}");
            assert!(d.errors.is_empty(), "{d:?}");
        }
        let mut r = req("payments", "read", "orders", 1);
        r.request
            .context
            .insert("client".into(), json!("not an ip"));
        let d = decide(&loaded, &r);
        assert!(
            !d.allowed && d.errors[0].starts_with("invalid context"),
            "{d:?}"
        );
    }
}

#[test]
fn gate_facts_of_each_request_are_used() {
    let loaded = load_ok(&[file(
        "p.cedar",
        &format!(
            "{READ_ORDERS}\n@id(\"stale\") forbid(principal, action, resource) when {{ context.gate.trust_anchor_age_days > 30 }};\n@id(\"late\") forbid(principal, action, resource) when {{ context.gate.now > datetime(\"2026-01-01T00:00:05Z\") }};\n@id(\"plain\") forbid(principal, action, resource) when {{ !context.gate.tls }};\n@id(\"ids\") forbid(principal, action, resource) when {{ context.gate.request_id == \"r-evil\" }};\n"
        ),
    )]);
    let mut r = req("payments", "read", "orders", 1);
    for round in 0..3 {
        r.gate = gate(5);
        r.gate.request_id = format!("r-{round}");
        assert!(decide(&loaded, &r).allowed, "round {round}");
        r.gate.trust_anchor_age_days = 31;
        assert_eq!(decide(&loaded, &r).determining, ["stale"]);
        r.gate = gate(5);
        r.gate.now_unix += 6;
        assert_eq!(decide(&loaded, &r).determining, ["late"]);
        r.gate = gate(5);
        r.gate.tls = false;
        assert_eq!(decide(&loaded, &r).determining, ["plain"]);
        r.gate = gate(5);
        r.gate.request_id = "r-evil".into();
        assert_eq!(decide(&loaded, &r).determining, ["ids"]);
    }
}

#[test]
fn entities_follow_the_attributes_of_each_request() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"senior\") permit(principal, action, resource) when { principal.level > 3 };\n",
    )]);
    let mut r = req("payments", "read", "orders", 1);
    assert!(decide(&loaded, &r).allowed);
    r.attrs = json!({ "level": 1 });
    assert!(
        !decide(&loaded, &r).allowed,
        "a memoized entity must not outlive its attributes"
    );
    r.attrs = json!({ "level": 9 });
    r.parents.clear();
    assert!(decide(&loaded, &r).allowed);
}

#[test]
fn action_groups_and_hierarchies_match() {
    let loaded = load_ok(&[file(
        "p.cedar",
        "@id(\"group\") permit(principal in Aws::Account::\"111122223333\", action in [Spanner::Action::\"all\"], resource in Spanner::Instance::\"i\");\n",
    )]);
    let d = decide(&loaded, &req("anyone", "write", "anything", 1));
    assert!(d.allowed, "{d:?}");
    let mut r = req("anyone", "write", "anything", 1);
    r.request.resource_parents.clear();
    assert!(!decide(&loaded, &r).allowed);
}

#[test]
fn slices_are_cached_per_request_shape() {
    let loaded = load_ok(&[file("p.cedar", READ_ORDERS)]);
    for _ in 0..3 {
        assert!(
            loaded
                .authorize(&req("payments", "read", "orders", 1).query())
                .allowed
        );
    }
    assert_eq!(loaded.slices.len(), 1);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("intentgate-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn reload_keeps_last_good() {
    let dir = temp_dir("reload");
    let path = dir.join("main.cedar");
    std::fs::write(&path, READ_ORDERS).unwrap();
    let sources = PolicySources {
        fragments: fragments(),
        principal_types: principal_types(),
        policy_files: policy_files_in(&dir).unwrap(),
    };
    let engine = PolicyEngine::new(load(&sources).unwrap());
    let r = req("payments", "write", "orders", 1);
    let before = engine.current();
    assert!(!before.authorize(&r.query()).allowed);

    // Valid: swapped in; the old snapshot still answers as before.
    std::fs::write(
        &path,
        format!("{READ_ORDERS}\n@id(\"writes\") permit(principal, action == Spanner::Action::\"write\", resource);\n"),
    )
    .unwrap();
    let summary = engine.reload(&sources).unwrap();
    assert_eq!((summary.policies, summary.previous_policies), (2, 1));
    assert!(engine.current().authorize(&r.query()).allowed);
    assert!(
        !before.authorize(&r.query()).allowed,
        "an in-flight snapshot must not change"
    );

    // Invalid: errors returned, the last good set keeps answering.
    std::fs::write(
        &path,
        "@id(\"broken\") permit(principal, action, resource) when { principal.nope };\n",
    )
    .unwrap();
    let errors = engine.reload(&sources).unwrap_err();
    assert!(
        errors[0].to_string().contains("main.cedar:1:"),
        "{}",
        render(&errors)
    );
    assert_eq!(engine.current().policy_count(), 2);
    assert!(engine.current().authorize(&r.query()).allowed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_policy_file_is_reported() {
    let sources = PolicySources {
        fragments: fragments(),
        principal_types: principal_types(),
        policy_files: vec![PathBuf::from("/nonexistent/x.cedar")],
    };
    let errors = load(&sources).unwrap_err();
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/x.cedar: cannot read policy file"),
        "{}",
        errors[0]
    );
}

const TESTS_TOML: &str = r#"
[[case]]
name = "payments reads orders"
principal = 'Aws::Role::"payments"'
principal_parents = ['Aws::Account::"111122223333"']
principal_attributes = { level = 5 }
action = 'Spanner::Action::"read"'
resource = 'Spanner::Database::"orders"'
resource_parents = ['Spanner::Instance::"i"']
context = { n = 1 }
decision = "allow"
determining = ["payments-read-orders"]
annotations = { database_role = "orders_reader" }

[[case]]
name = "stale trust anchor"
principal = 'Aws::Role::"payments"'
principal_attributes = { level = 5 }
action = 'Spanner::Action::"read"'
resource = 'Spanner::Database::"orders"'
context = { n = 1 }
gate = { trust_anchor_age_days = 45 }
decision = "deny"
determining = ["stale-trust"]

[[case]]
name = "wrongly expects allow"
principal = 'Aws::Role::"payments"'
principal_attributes = { level = 5 }
action = 'Spanner::Action::"write"'
resource = 'Spanner::Database::"orders"'
context = { n = 1 }
decision = "allow"

[[case]]
name = "typo in the request is not a silent deny"
principal = 'Aws::Role::"payments"'
principal_attributes = { level = 5 }
action = 'Spanner::Action::"read"'
resource = 'Spanner::Database::"orders"'
context = { m = 1 }
decision = "deny"
"#;

#[test]
fn policy_test_file_reports_each_case() {
    let loaded = load_ok(&[file(
        "p.cedar",
        &format!(
            "{READ_ORDERS}\n@id(\"stale-trust\") forbid(principal, action, resource) when {{ context.gate.trust_anchor_age_days > 30 }};\n"
        ),
    )]);
    let dir = temp_dir("tests-file");
    let path = dir.join("cases.toml");
    std::fs::write(&path, TESTS_TOML).unwrap();
    let report = run_policy_tests(&loaded, &path).unwrap();
    let outcome: Vec<(&str, bool)> = report
        .cases
        .iter()
        .map(|c| (c.name.as_str(), c.passed()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("payments reads orders", true),
            ("stale trust anchor", true),
            ("wrongly expects allow", false),
            ("typo in the request is not a silent deny", false),
        ],
        "{report}"
    );
    assert_eq!((report.passed(), report.failed()), (2, 2));
    let third = &report.cases[2];
    assert!(
        third.failures[0].starts_with("expected allow, got deny"),
        "{report}"
    );
    assert!(
        report.cases[3].failures[0].contains("expect_errors"),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains(&format!("FAIL  wrongly expects allow ({}:", path.display())),
        "{report}"
    );
    assert_eq!(third.line, 26, "{report}");

    // Errors in the file itself name the line.
    std::fs::write(&path, "[[case]]\nname = \"x\"\nprincipal = 'Aws::Role'\naction = 'Spanner::Action::\"read\"'\nresource = 'Spanner::Database::\"d\"'\ndecision = \"maybe\"\n").unwrap();
    let errors = run_policy_tests(&loaded, &path).unwrap_err();
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!(errors[0].line, Some(3), "{}", render(&errors));
    assert!(
        errors[0].message.contains("not an entity reference"),
        "{}",
        render(&errors)
    );
    assert_eq!(errors[1].line, Some(6), "{}", render(&errors));
    std::fs::write(&path, "[[case]]\nname = \"x\"\nbogus = 1\n").unwrap();
    let errors = run_policy_tests(&loaded, &path).unwrap_err();
    assert_eq!(errors[0].line, Some(3), "{}", render(&errors));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagnostics_display_and_tidy() {
    let d = PolicyDiagnostic::new("Something Failed.")
        .in_file("a.cedar")
        .at_offset("x\nyz", 3)
        .with_help("Do this.");
    assert_eq!(
        d.to_string(),
        "a.cedar:2:2: something Failed\n  help: do this"
    );
    assert_eq!(
        PolicyDiagnostic::new("URL is wrong").to_string(),
        "URL is wrong"
    );
}

#[test]
fn gate_time_is_rfc3339() {
    assert_eq!(request::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(request::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(request::rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
}

#[test]
fn engine_types_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<LoadedPolicies>();
    shared::<PolicyEngine>();
}
