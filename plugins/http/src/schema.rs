//! The connector's Cedar schema fragment. It depends on the configuration:
//! each configured context header becomes an optional attribute of
//! `context.headers`.

use crate::config::HttpConfig;

/// Renders the fragment (Cedar schema syntax).
pub fn render(config: &HttpConfig) -> String {
    let headers = if config.context_headers.is_empty() {
        "{}".to_string()
    } else {
        // Header names are RFC 9110 tokens (checked in config), which never
        // contain `"` or `\`, so quoting them needs no escaping.
        let attrs: Vec<String> = config
            .context_headers
            .iter()
            .map(|h| format!("\"{h}\"?: String"))
            .collect();
        format!("{{ {} }}", attrs.join(", "))
    };
    format!(
        r#"namespace Http {{
  entity Path in [Path];
  action "read", "write";
  action "GET", "HEAD", "OPTIONS" in ["read"] appliesTo {{ principal: [Intentgate::Principal], resource: [Path], context: Ctx }};
  action "POST", "PUT", "PATCH", "DELETE" in ["write"] appliesTo {{ principal: [Intentgate::Principal], resource: [Path], context: Ctx }};
  type Ctx = {{ gate: Intentgate::Gate, method: String, path: String, query: String, headers: {headers} }};
}}
"#
    )
}

/// What `cedar-schema()` returns when the configuration is invalid: text that
/// is deliberately not valid Cedar, so the host refuses to load the plugin,
/// with the reason in the first line (a WIT function returning `string`
/// cannot return an error).
pub fn invalid_config(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("// intentgate http plugin: {one_line}\n!invalid-plugin-configuration!\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(headers: &[&str]) -> HttpConfig {
        HttpConfig {
            context_headers: headers.iter().map(|h| h.to_string()).collect(),
            max_path_bytes: 2048,
        }
    }

    #[test]
    fn headers_record_lists_configured_headers() {
        let s = render(&config(&["x-tenant", "accept"]));
        assert!(
            s.contains(r#"headers: { "x-tenant"?: String, "accept"?: String } };"#),
            "{s}"
        );
        let s = render(&config(&[]));
        assert!(s.contains("headers: {} };"), "{s}");
    }

    /// Parses the fragment with Cedar together with a stand-in for the
    /// host's base fragment, validates a policy against it in strict mode,
    /// and checks that an `in` policy on a parent path matches.
    #[test]
    fn fragment_is_valid_cedar() {
        use cedar_policy::{
            Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, Schema,
            SchemaFragment, ValidationMode, Validator,
        };
        use std::collections::{HashMap, HashSet};
        use std::str::FromStr;

        let base = r#"namespace Intentgate {
  entity Principal;
  type Gate = { listener: String };
}"#;
        let (base, _) = SchemaFragment::from_cedarschema_str(base).unwrap();
        for headers in [&[][..], &["x-tenant", "x_odd.name!"][..]] {
            let text = render(&config(headers));
            let (frag, warnings) = SchemaFragment::from_cedarschema_str(&text)
                .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            assert_eq!(warnings.count(), 0);
            let schema = Schema::from_schema_fragments([base.clone(), frag]).unwrap();
            let policies = PolicySet::from_str(
                r#"permit (principal, action in Http::Action::"read", resource in Http::Path::"/orders")
                   when { context.method == "GET" && context.query == "" };
                   permit (principal, action == Http::Action::"DELETE", resource)
                   when { context.headers has "x-tenant" && context.headers["x-tenant"] == "t1" && context.gate.listener == "l" };"#,
            )
            .unwrap();
            let validator = Validator::new(schema.clone());
            let result = validator.validate(&policies, ValidationMode::Strict);
            let unguarded = PolicySet::from_str(
                r#"permit (principal, action, resource) when { context.headers["x-tenant"] == "t1" };"#,
            )
            .unwrap();
            // Optional attributes need a `has` guard; undeclared ones fail.
            assert!(
                !validator
                    .validate(&unguarded, ValidationMode::Strict)
                    .validation_passed()
            );
            assert!(result.validation_passed(), "{result}");

            let path = |p: &str| EntityUid::from_str(&format!("Http::Path::{p:?}")).unwrap();
            let parents: HashSet<EntityUid> = ["/orders/42", "/orders", "/"]
                .into_iter()
                .map(path)
                .collect();
            let entities = Entities::from_entities(
                ["/orders/42", "/orders", "/"]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let up = ["/orders", "/"]
                            .get(i)
                            .map(|p| path(p))
                            .into_iter()
                            .collect();
                        Entity::new(path(p), HashMap::new(), up).unwrap()
                    })
                    .chain([
                        Entity::new(path("/orders/42/items"), HashMap::new(), parents).unwrap(),
                        Entity::new_no_attrs(
                            EntityUid::from_str(r#"Intentgate::Principal::"p""#).unwrap(),
                            HashSet::new(),
                        ),
                    ]),
                Some(&schema),
            )
            .unwrap();
            let context = Context::from_json_str(
                r#"{"gate":{"listener":"l"},"method":"GET","path":"/orders/42/items","query":"","headers":{}}"#,
                Some((&schema, &EntityUid::from_str(r#"Http::Action::"GET""#).unwrap())),
            )
            .unwrap();
            let request = Request::new(
                EntityUid::from_str(r#"Intentgate::Principal::"p""#).unwrap(),
                EntityUid::from_str(r#"Http::Action::"GET""#).unwrap(),
                path("/orders/42/items"),
                context,
                Some(&schema),
            )
            .unwrap();
            let response = Authorizer::new().is_authorized(&request, &policies, &entities);
            assert_eq!(response.decision(), cedar_policy::Decision::Allow);
        }
    }

    #[test]
    fn invalid_config_is_one_comment_line_then_garbage() {
        let s = invalid_config("bad\nthing");
        assert_eq!(s.lines().count(), 2);
        assert!(s.starts_with("// intentgate http plugin: bad thing\n"));
    }
}
