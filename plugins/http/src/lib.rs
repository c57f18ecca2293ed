//! intentgate HTTP connector: classifies HTTP requests into Cedar requests.
//!
//! * action `Http::Action::"<METHOD>"` (GET/HEAD/OPTIONS in `"read"`,
//!   POST/PUT/PATCH/DELETE in `"write"`),
//! * resource `Http::Path::"<path>"` whose parents are every proper prefix,
//! * context `{ method, path, query, headers }`,
//! * no capability, no binding; GET, HEAD and OPTIONS are replay-safe.
//!
//! The pure logic lives in [`config`], [`path`], [`classify`] and [`schema`];
//! this file only adapts it to the WIT bindings.

mod bindings {
    #![allow(unsafe_code)]
    wit_bindgen::generate!({
        world: "connector-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::HttpConnector;
    export!(HttpConnector with_types_in self);
}

// Each call gets a fresh instance: bump-allocate, never free.
intentgate_guest::use_call_arena!();

mod classify;
mod config;
mod path;
mod schema;

use bindings::exports::intentgate::plugin::connector::{
    AuthzRequest, Binding, Call, Classification, ClassifyError, Guest, Observation,
};
use bindings::intentgate::plugin::log::{self, Level};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use classify::{ACTION_TYPE, PATH_TYPE, Refusal};
use config::HttpConfig;

struct HttpConnector;

/// Whether a call with this (already supported) method may be sent upstream
/// again after an attempt failed before any response reached the caller:
/// only the safe methods (RFC 9110, section 9.2.1), which are idempotent
/// too. PUT and DELETE are idempotent by the RFC but change state, and an
/// upstream may not honour that, so they are not offered for replay.
fn replay_safe(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

fn load_config() -> Result<HttpConfig, String> {
    HttpConfig::parse(&bindings::intentgate::plugin::config::get())
}

fn entity(type_name: &str, id: &str) -> EntityRef {
    EntityRef {
        type_name: type_name.to_string(),
        id: id.to_string(),
    }
}

impl Guest for HttpConnector {
    fn check_config() -> Result<(), String> {
        load_config().map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "http".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            outbound: Vec::new(),
            // Only the headers the operator put into the context (a bad
            // config is refused by check-config before this matters).
            headers: load_config().map(|c| c.context_headers).unwrap_or_default(),
        }
    }

    fn cedar_schema() -> String {
        match load_config() {
            Ok(config) => schema::render(&config),
            Err(reason) => {
                log::log(Level::Error, &reason);
                schema::invalid_config(&reason)
            }
        }
    }

    fn classify(call: Call) -> Result<Classification, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        let classified = classify::classify(
            &config,
            &call.protocol,
            &call.method,
            &call.path,
            &call.headers,
        )
        .map_err(|r| match r {
            Refusal::Malformed(s) => ClassifyError::Malformed(s),
            Refusal::Unsupported(s) => ClassifyError::Unsupported(s),
        })?;
        Ok(Classification {
            requests: vec![AuthzRequest {
                action: entity(ACTION_TYPE, &classified.method),
                resource: entity(PATH_TYPE, &classified.path),
                resource_attributes_json: "{}".to_string(),
                resource_parents: classified
                    .parents
                    .iter()
                    .map(|p| entity(PATH_TYPE, p))
                    .collect(),
                context_json: classified.context_json,
            }],
            binding_annotation: None,
            observe_response: false,
            capability: None,
            replay_safe: replay_safe(&classified.method),
        })
    }

    fn bind(_call: Call, _binding_value: String) -> Result<Binding, ClassifyError> {
        Err(ClassifyError::Unsupported(
            "the http connector does not bind calls to backend identities".to_string(),
        ))
    }

    fn observe(_call: Call, _response: Vec<u8>) -> Result<Observation, ClassifyError> {
        Err(ClassifyError::Unsupported(
            "the http connector does not observe responses".to_string(),
        ))
    }

    fn lookup(_capability: String) -> Result<Call, ClassifyError> {
        Err(ClassifyError::Unsupported(
            "the http connector has no capabilities to look up".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::replay_safe;

    #[test]
    fn only_safe_methods_are_replay_safe() {
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(replay_safe(m), "{m}");
        }
        for m in ["POST", "PUT", "PATCH", "DELETE", "get", ""] {
            assert!(!replay_safe(m), "{m}");
        }
    }
}
