//! The connector's Cedar schema fragment.
//!
//! `read` and `write` are request actions and also action groups: `connect`
//! (CreateSession, BatchCreateSessions) is in both, so a policy on
//! `action in [Spanner::Action::"read"]` (or `"write"`) also lets the caller
//! create the session it reads (or writes) through.

/// The fragment (Cedar schema syntax). It does not depend on the config.
pub const FRAGMENT: &str = r#"namespace Spanner {
  entity Instance;
  entity Database in [Instance];
  type Ctx = { gate: Intentgate::Gate, rpc: String, session: String, sql_kind: String, tables: Set<String>, transaction: String };
  action "read", "write" appliesTo { principal: [Intentgate::Principal], resource: [Database], context: Ctx };
  action "connect" in ["read", "write"] appliesTo { principal: [Intentgate::Principal], resource: [Database], context: Ctx };
}
"#;

/// What `cedar-schema()` returns when the configuration is invalid: text that
/// is deliberately not valid Cedar, so the host refuses to load the plugin,
/// with the reason in the first line (a WIT function returning `string`
/// cannot return an error).
pub fn invalid_config(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("// intentgate spanner plugin: {one_line}\n!invalid-plugin-configuration!\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{
        Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicySet, Request, Schema,
        SchemaFragment, ValidationMode, Validator,
    };
    use std::collections::{HashMap, HashSet};
    use std::str::FromStr;

    /// The host's base fragment (`host/src/policy/base.cedarschema`), less
    /// its comments.
    const BASE: &str = r#"namespace Intentgate {
  entity Principal;
  type Gate = {
    request_id: String,
    listener: String,
    peer_ip: ipaddr,
    identity_provider: String,
    trust_anchor: String,
    trust_anchor_age_days: Long,
    now: datetime,
    tls: Bool,
  };
}"#;

    const DB: &str = "projects/p/instances/i/databases/orders";

    fn schema() -> Schema {
        let (base, _) = SchemaFragment::from_cedarschema_str(BASE).unwrap();
        let (frag, warnings) = SchemaFragment::from_cedarschema_str(FRAGMENT)
            .unwrap_or_else(|e| panic!("{e:?}\n{FRAGMENT}"));
        assert_eq!(warnings.count(), 0);
        Schema::from_schema_fragments([base, frag]).unwrap()
    }

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    fn decide(schema: &Schema, policies: &PolicySet, action: &str) -> Decision {
        let principal = uid(r#"Intentgate::Principal::"p""#);
        let instance = uid(r#"Spanner::Instance::"projects/p/instances/i""#);
        let database = uid(&format!("Spanner::Database::{DB:?}"));
        let entities = Entities::from_entities(
            [
                Entity::new_no_attrs(principal.clone(), HashSet::new()),
                Entity::new_no_attrs(instance.clone(), HashSet::new()),
                Entity::new(database.clone(), HashMap::new(), HashSet::from([instance])).unwrap(),
            ],
            Some(schema),
        )
        .unwrap();
        let action = uid(&format!("Spanner::Action::{action:?}"));
        let context = Context::from_json_str(
            &format!(
                r#"{{"gate":{{"request_id":"r","listener":"l","peer_ip":{{"__extn":{{"fn":"ip","arg":"127.0.0.1"}}}},
                "identity_provider":"oidc","trust_anchor":"t","trust_anchor_age_days":1,
                "now":{{"__extn":{{"fn":"datetime","arg":"2026-01-01"}}}},"tls":false}},
                "rpc":"ExecuteSql","session":"{DB}/sessions/s","sql_kind":"query","tables":["t"],"transaction":"none"}}"#
            ),
            Some((schema, &action)),
        )
        .unwrap();
        let request = Request::new(principal, action, database, context, Some(schema)).unwrap();
        Authorizer::new()
            .is_authorized(&request, policies, &entities)
            .decision()
    }

    /// Parses the fragment with the base fragment, validates policies in
    /// strict mode, and checks the action hierarchy: `read` covers `read`
    /// and `connect`, not `write`.
    #[test]
    fn fragment_is_valid_cedar_and_read_covers_connect() {
        let schema = schema();
        let read = PolicySet::from_str(&format!(
            r#"@database_role("orders_reader")
            permit (principal, action in [Spanner::Action::"read"], resource in Spanner::Database::{DB:?})
            when {{ context.transaction != "id" && context.gate.listener == "l" && !context.tables.contains("secrets") }};"#
        ))
        .unwrap();
        let result = Validator::new(schema.clone()).validate(&read, ValidationMode::Strict);
        assert!(result.validation_passed(), "{result}");
        assert_eq!(decide(&schema, &read, "read"), Decision::Allow);
        assert_eq!(decide(&schema, &read, "connect"), Decision::Allow);
        assert_eq!(decide(&schema, &read, "write"), Decision::Deny);

        let write = PolicySet::from_str(
            r#"permit (principal, action in [Spanner::Action::"write"], resource in Spanner::Instance::"projects/p/instances/i");"#,
        )
        .unwrap();
        let result = Validator::new(schema.clone()).validate(&write, ValidationMode::Strict);
        assert!(result.validation_passed(), "{result}");
        assert_eq!(decide(&schema, &write, "write"), Decision::Allow);
        assert_eq!(decide(&schema, &write, "connect"), Decision::Allow);
        assert_eq!(decide(&schema, &write, "read"), Decision::Deny);

        // `==` names one action only: a read permit written that way does
        // not cover connect.
        let exact = PolicySet::from_str(
            r#"permit (principal, action == Spanner::Action::"read", resource);"#,
        )
        .unwrap();
        assert_eq!(decide(&schema, &exact, "read"), Decision::Allow);
        assert_eq!(decide(&schema, &exact, "connect"), Decision::Deny);

        // Undeclared context attributes fail strict validation.
        let bad = PolicySet::from_str(
            r#"permit (principal, action, resource) when { context.sql == "x" };"#,
        )
        .unwrap();
        assert!(
            !Validator::new(schema)
                .validate(&bad, ValidationMode::Strict)
                .validation_passed()
        );
    }

    #[test]
    fn invalid_config_is_one_comment_line_then_garbage() {
        let s = invalid_config("bad\nthing");
        assert_eq!(s.lines().count(), 2);
        assert!(s.starts_with("// intentgate spanner plugin: bad thing\n"));
        assert!(SchemaFragment::from_cedarschema_str(&s).is_err());
    }
}
