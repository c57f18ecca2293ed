//! The hostile plugin's configuration.

use serde::Deserialize;

/// `config` keys: `ask_outbound` (what `metadata()` asks for, default `[]`)
/// and `loopback_url` (the target of the `outbound-loopback` mode).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostileConfig {
    #[serde(default)]
    pub ask_outbound: Vec<String>,
    #[serde(default)]
    pub loopback_url: Option<String>,
}

impl HostileConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("hostile: invalid config: {e}"))?;
        if !value.is_object() {
            return Err("hostile: invalid config: expected a JSON object".to_string());
        }
        serde_json::from_value(value).map_err(|e| format!("hostile: invalid config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_keys() {
        assert_eq!(
            HostileConfig::parse("{}").unwrap(),
            HostileConfig::default()
        );
        let c = HostileConfig::parse(
            r#"{"ask_outbound":["https://a.example"],"loopback_url":"http://127.0.0.1:1/"}"#,
        )
        .unwrap();
        assert_eq!(c.ask_outbound, vec!["https://a.example"]);
        assert_eq!(c.loopback_url.as_deref(), Some("http://127.0.0.1:1/"));
        assert!(HostileConfig::parse(r#"{"nope":1}"#).is_err());
    }
}
