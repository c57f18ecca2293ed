//! intentgate template connector: a small but complete connector for an HTTP
//! key-value store, written to be copied as the start of your own.
//!
//! `GET|PUT|DELETE <prefix>/<bucket>/<key>` (prefix `/kv` by default) becomes
//! one Cedar request: action `Kv::Action::"get"|"put"|"delete"`, resource
//! `Kv::Bucket::"<bucket>"`, context `{ key }`. Anything else is refused.
//!
//! To start your own connector (docs/plugins.md, "Write a connector, step by
//! step"): copy this folder to `plugins/<yours>`, rename the package in
//! `Cargo.toml`, add it to `members` in `plugins/Cargo.toml` and to `plugins=`
//! in `scripts/build-plugins`, then rewrite `src/kv.rs` (config, classify,
//! schema and their tests) for your protocol. This file only adapts `kv` to
//! the WIT bindings; lines marked COPYING are the ones to change here.

mod bindings {
    #![allow(unsafe_code)]
    // Generates the Rust types and the `Guest` trait of the `connector-plugin`
    // world from the WIT contract (the path is relative to this crate).
    wit_bindgen::generate!({
        world: "connector-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::KvConnector;
    export!(KvConnector with_types_in self);
}

// Each call gets a fresh instance: bump-allocate, never free.
intentgate_guest::use_call_arena!();

mod kv;

use bindings::exports::intentgate::plugin::connector::{
    AuthzRequest, Binding, Call, Classification, ClassifyError, Guest, Observation,
};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use kv::{KvConfig, Refusal};

/// COPYING: rename.
struct KvConnector;

/// The operator's `config` table, as JSON. Every export runs in a fresh
/// instance (plugins keep no state between calls), so each one reads it.
fn load_config() -> Result<KvConfig, String> {
    KvConfig::parse(&bindings::intentgate::plugin::config::get())
}

fn entity(type_name: &str, id: &str) -> EntityRef {
    EntityRef {
        type_name: type_name.to_string(),
        id: id.to_string(),
    }
}

fn unsupported(what: &str) -> ClassifyError {
    // COPYING: the connector's name in the reason.
    ClassifyError::Unsupported(format!("the kv connector does not {what}"))
}

impl Guest for KvConnector {
    /// Called once when the host loads the plugin (also by `intentgate
    /// check`): a bad config stops the load and the operator sees the reason.
    fn check_config() -> Result<(), String> {
        load_config().map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            // COPYING: your connector's short name.
            name: "kv".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            // Connectors never get network access: asking for any origin
            // stops the plugin from loading.
            outbound: Vec::new(),
            // COPYING: the request headers your `classify` reads, lowercase; the
            // host passes only these in `call.headers`. This one reads none.
            headers: Vec::new(),
        }
    }

    fn cedar_schema() -> String {
        kv::SCHEMA.to_string()
    }

    fn classify(call: Call) -> Result<Classification, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        // The HTTP listener passes no body (`call.body` is empty); decide from
        // the method and the request target alone.
        let c = kv::classify(&config, &call.protocol, &call.method, &call.path).map_err(
            |r| match r {
                Refusal::Malformed(s) => ClassifyError::Malformed(s), // HTTP 400
                Refusal::Unsupported(s) => ClassifyError::Unsupported(s), // HTTP 403
            },
        )?;
        Ok(Classification {
            // One question per call here; return several (one per table, say)
            // when a call touches several resources: all must be allowed.
            requests: vec![AuthzRequest {
                action: entity(kv::ACTION_TYPE, c.action),
                resource: entity(kv::BUCKET_TYPE, &c.bucket),
                resource_attributes_json: "{}".to_string(),
                resource_parents: Vec::new(),
                context_json: c.context_json,
            }],
            // No backend identity to pick, no capability, nothing to observe:
            // see plugins/spanner for a connector that uses all three.
            binding_annotation: None,
            observe_response: false,
            capability: None,
            replay_safe: c.replay_safe,
        })
    }

    /// Only called when a classification names a `binding_annotation`.
    fn bind(_call: Call, _binding_value: String) -> Result<Binding, ClassifyError> {
        Err(unsupported("bind calls to backend identities"))
    }

    /// Only called when a classification sets `observe_response`.
    fn observe(_call: Call, _response: Vec<u8>) -> Result<Observation, ClassifyError> {
        Err(unsupported("observe responses"))
    }

    /// Only called for a `capability` the host has not seen granted.
    fn lookup(_capability: String) -> Result<Call, ClassifyError> {
        Err(unsupported("have capabilities to look up"))
    }
}
