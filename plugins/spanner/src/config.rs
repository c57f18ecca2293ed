//! The Spanner connector's configuration (`config` table of the plugin
//! instance).

use serde::Deserialize;

use crate::names;

/// Default for `max_message_bytes` (4 MiB, gRPC's default receive limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Upper bound an operator may configure for `max_message_bytes`.
pub const MAX_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannerConfig {
    /// `projects/<p>/instances/<i>` names, unique, at least one.
    pub instances: Vec<String>,
    /// Largest first message accepted, in bytes.
    pub max_message_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instances: Option<Vec<String>>,
    #[serde(default)]
    max_message_bytes: Option<usize>,
}

impl SpannerConfig {
    /// Parses and validates the JSON configuration; the error names the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        let fail = |m: String| format!("invalid spanner plugin config: {m}");
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
        if !value.is_object() {
            return Err(fail("expected a JSON object".to_string()));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
        let Some(listed) = raw.instances else {
            return Err(fail(
                "`instances` is required: the `projects/<p>/instances/<i>` names this connector serves"
                    .to_string(),
            ));
        };
        if listed.is_empty() {
            return Err(fail("`instances` must not be empty".to_string()));
        }
        let mut instances: Vec<String> = Vec::with_capacity(listed.len());
        for name in listed {
            names::parse_instance(&name).map_err(|e| fail(format!("`instances`: {e}")))?;
            if instances.contains(&name) {
                return Err(fail(format!(
                    "`instances` lists {} twice",
                    names::shown(&name)
                )));
            }
            instances.push(name);
        }
        let max_message_bytes = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 || max_message_bytes > MAX_MAX_MESSAGE_BYTES {
            return Err(fail(format!(
                "`max_message_bytes` must be between 1 and {MAX_MAX_MESSAGE_BYTES}, got {max_message_bytes}"
            )));
        }
        Ok(Self {
            instances,
            max_message_bytes,
        })
    }

    /// Whether `instance` (`projects/<p>/instances/<i>`) is configured.
    pub fn serves(&self, instance: &str) -> bool {
        self.instances.iter().any(|i| i == instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = SpannerConfig::parse(r#"{"instances":["projects/p/instances/i"]}"#).unwrap();
        assert_eq!(c.instances, vec!["projects/p/instances/i"]);
        assert_eq!(c.max_message_bytes, 4 * 1024 * 1024);
        assert!(c.serves("projects/p/instances/i"));
        assert!(!c.serves("projects/p/instances/j"));
    }

    #[test]
    fn explicit_values() {
        let c = SpannerConfig::parse(
            r#"{"instances":["projects/p/instances/i","projects/q/instances/j"],"max_message_bytes":1024}"#,
        )
        .unwrap();
        assert_eq!(c.instances.len(), 2);
        assert_eq!(c.max_message_bytes, 1024);
    }

    #[test]
    fn rejects_bad_config() {
        for (json, needle) in [
            ("{}", "`instances` is required"),
            (r#"{"instances":[]}"#, "must not be empty"),
            (r#"{"instances":["projects/p"]}"#, "not an instance name"),
            (
                r#"{"instances":["projects/p/instances/i/databases/d"]}"#,
                "not an instance name",
            ),
            (
                r#"{"instances":["projects/p/instances/i","projects/p/instances/i"]}"#,
                "twice",
            ),
            (
                r#"{"instances":["projects/p/instances/i"],"instance":[]}"#,
                "unknown field `instance`",
            ),
            (
                r#"{"instances":["projects/p/instances/i"],"max_message_bytes":0}"#,
                "between 1 and",
            ),
            (
                r#"{"instances":["projects/p/instances/i"],"max_message_bytes":100000000}"#,
                "between 1 and",
            ),
            (
                r#"{"instances":["projects/p/instances/i"],"max_message_bytes":-1}"#,
                "invalid spanner plugin config",
            ),
            (r#"{"instances":"projects/p/instances/i"}"#, "invalid type"),
            ("[]", "expected a JSON object"),
            ("", "invalid spanner plugin config"),
        ] {
            let err = SpannerConfig::parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
