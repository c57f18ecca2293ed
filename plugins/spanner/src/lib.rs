//! intentgate Spanner connector: classifies `google.spanner.v1.Spanner` gRPC
//! calls into Cedar requests from the first request message's raw bytes.
//!
//! * action `Spanner::Action::"read"`, `"write"` or `"connect"` (in both),
//! * resource `Spanner::Database::"projects/p/instances/i/databases/d"`
//!   whose parent is `Spanner::Instance::"projects/p/instances/i"`,
//! * context `{ rpc, session, sql_kind, tables, transaction }`,
//! * CreateSession / BatchCreateSessions are bound to the policy's
//!   `database_role` (forced `creator_role`) and their responses observed,
//! * every other RPC that names a session presents it as a capability bound
//!   to that role; `lookup` asks Spanner (GetSession) for a session's role,
//! * replay-safe: what Spanner's service config retries, except a
//!   single-use Commit.
//!
//! The pure logic lives in [`wire`], [`names`], [`config`], [`classify`],
//! [`bind`] and [`schema`]; this file only adapts it to the WIT bindings.

mod bindings {
    #![allow(unsafe_code)]
    wit_bindgen::generate!({
        world: "connector-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::SpannerConnector;
    export!(SpannerConnector with_types_in self);
}

// Each call gets a fresh instance: bump-allocate, never free.
intentgate_guest::use_call_arena!();

mod bind;
mod classify;
mod config;
mod names;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

use bindings::exports::intentgate::plugin::connector::{
    AuthzRequest, Binding, Call, Classification, ClassifyError, Guest, Observation,
};
use bindings::intentgate::plugin::log::{self, Level};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use classify::{ACTION_TYPE, DATABASE_TYPE, GRPC, INSTANCE_TYPE, Refusal};
use config::SpannerConfig;

struct SpannerConnector;

fn load_config() -> Result<SpannerConfig, String> {
    SpannerConfig::parse(&bindings::intentgate::plugin::config::get())
}

fn entity(type_name: &str, id: &str) -> EntityRef {
    EntityRef {
        type_name: type_name.to_string(),
        id: id.to_string(),
    }
}

fn refusal(r: Refusal) -> ClassifyError {
    match r {
        Refusal::Malformed(s) => ClassifyError::Malformed(s),
        Refusal::Unsupported(s) => ClassifyError::Unsupported(s),
    }
}

impl Guest for SpannerConnector {
    fn check_config() -> Result<(), String> {
        load_config().map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "spanner".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            outbound: Vec::new(),
            headers: classify::ROUTING_HEADERS
                .iter()
                .map(|h| (*h).to_string())
                .collect(),
        }
    }

    fn cedar_schema() -> String {
        match load_config() {
            Ok(_) => schema::FRAGMENT.to_string(),
            Err(reason) => {
                log::log(Level::Error, &reason);
                schema::invalid_config(&reason)
            }
        }
    }

    fn classify(call: Call) -> Result<Classification, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        let c = classify::classify(
            &config,
            &call.protocol,
            &call.method,
            &call.path,
            &call.headers,
            &call.body,
        )
        .map_err(refusal)?;
        Ok(Classification {
            requests: vec![AuthzRequest {
                action: entity(ACTION_TYPE, c.action.id()),
                resource: entity(DATABASE_TYPE, &c.database),
                resource_attributes_json: "{}".to_string(),
                resource_parents: vec![entity(INSTANCE_TYPE, &c.instance)],
                context_json: c.context_json(),
            }],
            binding_annotation: c.binding_annotation.map(str::to_string),
            observe_response: c.observe_response,
            capability: c.capability,
            replay_safe: c.replay_safe,
        })
    }

    fn bind(call: Call, binding_value: String) -> Result<Binding, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        let append_body = bind::bind(
            &config,
            &call.protocol,
            &call.method,
            &call.path,
            &call.body,
            &binding_value,
        )
        .map_err(refusal)?;
        Ok(Binding {
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            append_body,
        })
    }

    fn observe(call: Call, response: Vec<u8>) -> Result<Observation, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        let grants = bind::observe(
            &config,
            &call.protocol,
            &call.method,
            &call.path,
            &call.body,
            &response,
        )
        .map_err(refusal)?;
        Ok(Observation { grants })
    }

    fn lookup(capability: String) -> Result<Call, ClassifyError> {
        let config = load_config().map_err(ClassifyError::Unsupported)?;
        let call = bind::lookup(&config, &capability).map_err(refusal)?;
        Ok(Call {
            protocol: GRPC.to_string(),
            path: call.method.clone(),
            method: call.method,
            headers: call.headers,
            body: call.body,
        })
    }
}
