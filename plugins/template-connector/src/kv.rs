//! The key-value protocol: config, classification and Cedar schema, in plain
//! Rust with no WIT types, so all of it is unit-tested on the host target.
//!
//! COPYING: this is the file to rewrite for your protocol. Keep its shape:
//! a config parsed and checked from JSON, a `classify` that returns plain
//! values or a `Refusal` with a reason a person can act on, a `SCHEMA` that
//! declares exactly what `classify` returns, and tests that can fail.

use intentgate_guest::quote;
use serde::Deserialize;

/// Cedar types of the actions and resources (COPYING: your namespace).
pub const ACTION_TYPE: &str = "Kv::Action";
pub const BUCKET_TYPE: &str = "Kv::Bucket";

/// The schema fragment (Cedar schema syntax). Actions name their principals
/// `Intentgate::Principal` (the host puts in the loaded identity providers'
/// types) and their context must hold `gate: Intentgate::Gate` (the host
/// fills it in); the rest of the context is what `classify` returns.
pub const SCHEMA: &str = r#"namespace Kv {
  entity Bucket;
  action "get", "put", "delete" appliesTo {
    principal: [Intentgate::Principal],
    resource: [Bucket],
    context: { gate: Intentgate::Gate, key: String }
  };
}
"#;

/// The plugin's `config` table. Unknown keys are refused so typos show.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// Path in front of `/<bucket>/<key>`: `""` or `/segment[/segment...]`.
    pub prefix: String,
    /// Longest key accepted, in bytes (1..=1024).
    pub max_key_bytes: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            prefix: "/kv".to_string(),
            max_key_bytes: 256,
        }
    }
}

impl KvConfig {
    /// Parses and checks the JSON config; the error names the key and the fix.
    pub fn parse(json: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid kv connector config: {why}");
        // Through a map first: serde would also read a JSON array as a struct.
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| bad(format!("expected a JSON object: {e}")))?;
        let config: Self = serde_json::from_value(object.into()).map_err(|e| bad(e.to_string()))?;
        let prefix_ok = config.prefix.is_empty()
            || config
                .prefix
                .strip_prefix('/')
                .is_some_and(|p| p.split('/').all(is_key));
        if !prefix_ok {
            return Err(bad(format!(
                "`prefix` {} must be empty or like `/kv` or `/api/kv` (no trailing `/`)",
                quote(&config.prefix)
            )));
        }
        if !(1..=1024).contains(&config.max_key_bytes) {
            return Err(bad(format!(
                "`max_key_bytes` must be between 1 and 1024, got {}",
                config.max_key_bytes
            )));
        }
        Ok(config)
    }
}

/// One classified call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The action id: `get`, `put` or `delete`.
    pub action: &'static str,
    /// The resource id.
    pub bucket: String,
    /// The connector's part of the Cedar context (the host adds `gate`).
    pub context_json: String,
    /// Whether the host may send the call again after a failure that reached
    /// no one.
    pub replay_safe: bool,
}

/// Why a call was refused; the host denies it either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a well-formed call of this protocol (the HTTP listener answers 400).
    Malformed(String),
    /// Well-formed, but not something this connector handles (403).
    Unsupported(String),
}

/// Classifies one call. The proxy forwards exactly the target it was given,
/// so nothing is decoded: whatever an upstream might read differently (dot
/// keys, percent-escapes, extra segments, a query) is refused, not rewritten.
pub fn classify(
    config: &KvConfig,
    protocol: &str,
    method: &str,
    target: &str,
) -> Result<Classified, Refusal> {
    use Refusal::{Malformed, Unsupported};
    if protocol != "http" {
        let p = quote(protocol);
        return Err(Unsupported(format!(
            "the kv connector speaks HTTP only, not {p}"
        )));
    }
    // Only GET is offered for replay: a retried PUT or DELETE could land after
    // another client's write.
    let (action, replay_safe) = match method {
        "GET" => ("get", true),
        "PUT" => ("put", false),
        "DELETE" => ("delete", false),
        other => {
            let m = quote(other);
            return Err(Unsupported(format!(
                "method {m} is not part of the kv protocol (GET, PUT, DELETE)"
            )));
        }
    };
    let shape = || {
        let t = quote(target);
        Malformed(format!("path {t} is not {}/<bucket>/<key>", config.prefix))
    };
    if target.contains('?') {
        let t = quote(target);
        return Err(Malformed(format!(
            "{t} has a query string; the kv protocol has none"
        )));
    }
    let rest = target
        .strip_prefix(config.prefix.as_str())
        .and_then(|r| r.strip_prefix('/'));
    let (bucket, key) = rest.and_then(|r| r.split_once('/')).ok_or_else(shape)?;
    if key.contains('/') {
        return Err(shape());
    }
    if !is_bucket(bucket) {
        let b = quote(bucket);
        return Err(Malformed(format!(
            "bucket {b} must be 1 to 63 lowercase letters, digits or `-`"
        )));
    }
    if key.len() > config.max_key_bytes {
        let (n, max) = (key.len(), config.max_key_bytes);
        return Err(Malformed(format!(
            "key is {n} bytes, over the {max}-byte limit"
        )));
    }
    if !is_key(key) {
        let k = quote(key);
        return Err(Malformed(format!(
            "key {k} must be letters, digits, `.`, `_` or `-`, and not `.` or `..` (nothing percent-encoded)"
        )));
    }
    Ok(Classified {
        action,
        bucket: bucket.to_string(),
        context_json: serde_json::json!({ "key": key }).to_string(),
        replay_safe,
    })
}

fn is_bucket(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn is_key(s: &str) -> bool {
    !matches!(s, "" | "." | "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KvConfig {
        KvConfig::parse("{}").unwrap()
    }

    #[test]
    fn classifies_get_put_and_delete() {
        for (method, action, replay_safe) in [
            ("GET", "get", true),
            ("PUT", "put", false),
            ("DELETE", "delete", false),
        ] {
            let c = classify(&config(), "http", method, "/kv/settings/theme.dark").unwrap();
            assert_eq!((c.action, c.bucket.as_str()), (action, "settings"));
            assert_eq!(c.replay_safe, replay_safe, "{method}");
            assert_eq!(c.context_json, r#"{"key":"theme.dark"}"#);
        }
    }

    #[test]
    fn the_prefix_and_key_limit_come_from_the_config() {
        let config = KvConfig::parse(r#"{"prefix":"/api/v2","max_key_bytes":4}"#).unwrap();
        assert_eq!(
            classify(&config, "http", "GET", "/api/v2/b/abcd")
                .unwrap()
                .bucket,
            "b"
        );
        let too_long = classify(&config, "http", "GET", "/api/v2/b/abcde").unwrap_err();
        assert_eq!(
            too_long,
            Refusal::Malformed("key is 5 bytes, over the 4-byte limit".into())
        );
        assert!(classify(&config, "http", "GET", "/kv/b/k").is_err());
        let root = KvConfig::parse(r#"{"prefix":""}"#).unwrap();
        assert_eq!(classify(&root, "http", "GET", "/b/k").unwrap().bucket, "b");
    }

    #[test]
    fn refuses_calls_it_does_not_understand_and_says_why() {
        let unsupported = [
            ("grpc", "POST", "/kv/b/k", "HTTP only, not `grpc`"),
            ("http", "POST", "/kv/b/k", "method `POST` is not part"),
            ("http", "get", "/kv/b/k", "method `get` is not part"),
        ];
        for (protocol, method, target, needle) in unsupported {
            match classify(&config(), protocol, method, target) {
                Err(Refusal::Unsupported(r)) => assert!(r.contains(needle), "{target}: {r}"),
                other => panic!("{method} {target}: {other:?}"),
            }
        }
        let malformed = [
            ("/kv/b", "path `/kv/b` is not /kv/<bucket>/<key>"),
            ("/kv/b/k/more", "is not /kv/<bucket>/<key>"),
            ("/kvx/b/k", "is not /kv/<bucket>/<key>"),
            ("/kv/Settings/k", "bucket `Settings` must be"),
            ("/kv//k", "bucket `` must be"),
            ("/kv/b/", "key `` must be"),
            ("/kv/b/..", "key `..` must be"),
            ("/kv/b/%2e%2e", "key `%2e%2e` must be"),
            ("/kv/b/caf\u{e9}", "key `café` must be"),
            ("/kv/b/k?version=2", "has a query string"),
        ];
        for (target, needle) in malformed {
            match classify(&config(), "http", "GET", target) {
                Err(Refusal::Malformed(r)) => assert!(r.contains(needle), "{target}: {r}"),
                other => panic!("{target}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_config_is_checked() {
        assert_eq!(config(), KvConfig::default());
        for (json, needle) in [
            (r#"{"prefx":"/kv"}"#, "unknown field `prefx`"),
            ("[]", "expected a JSON object"),
            (r#"{"prefix":"kv"}"#, "`prefix` `kv` must be"),
            (r#"{"prefix":"/kv/"}"#, "`prefix` `/kv/` must be"),
            (r#"{"prefix":"/a/../b"}"#, "`prefix` `/a/../b` must be"),
            (r#"{"max_key_bytes":0}"#, "between 1 and 1024, got 0"),
            (r#"{"max_key_bytes":2000}"#, "between 1 and 1024, got 2000"),
            (r#"{"max_key_bytes":-1}"#, "invalid kv connector config"),
        ] {
            let err = KvConfig::parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    /// The fragment parses next to the host's real base fragment, policies
    /// validate against it in strict mode, and a request built from what
    /// `classify` returns conforms to it.
    #[test]
    fn the_schema_declares_what_classify_returns() {
        use cedar_policy::{
            Context, EntityUid, PolicySet, Request, Schema, ValidationMode, Validator,
        };
        use std::str::FromStr;

        let base = include_str!("../../../policies/base.cedarschema");
        let schema = Schema::from_cedarschema_str(&format!("{base}\n{SCHEMA}"))
            .unwrap()
            .0;
        let validator = Validator::new(schema.clone());
        let good = PolicySet::from_str(
            r#"permit (principal, action == Kv::Action::"get", resource == Kv::Bucket::"settings")
               when { context.key like "theme*" && context.gate.tls };"#,
        )
        .unwrap();
        let result = validator.validate(&good, ValidationMode::Strict);
        assert!(result.validation_passed(), "{result}");
        let undeclared = PolicySet::from_str(
            r#"permit (principal, action, resource) when { context.value == "x" };"#,
        )
        .unwrap();
        assert!(
            !validator
                .validate(&undeclared, ValidationMode::Strict)
                .validation_passed()
        );

        for method in ["GET", "PUT", "DELETE"] {
            let c = classify(&config(), "http", method, "/kv/settings/theme").unwrap();
            let mut context: serde_json::Value = serde_json::from_str(&c.context_json).unwrap();
            context["gate"] = serde_json::json!({
                "request_id": "r", "listener": "l", "peer_ip": "127.0.0.1", "identity_provider": "oidc",
                "trust_anchor": "t", "trust_anchor_age_days": 0, "now": "2026-01-01", "tls": true,
            });
            let action = EntityUid::from_str(&format!("{ACTION_TYPE}::\"{}\"", c.action)).unwrap();
            let context = Context::from_json_value(context, Some((&schema, &action))).unwrap();
            Request::new(
                EntityUid::from_str(r#"Intentgate::Principal::"p""#).unwrap(),
                action,
                EntityUid::from_str(&format!("{BUCKET_TYPE}::\"{}\"", c.bucket)).unwrap(),
                context,
                Some(&schema),
            )
            .unwrap();
        }
    }
}
