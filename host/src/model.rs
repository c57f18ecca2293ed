//! Plain data that crosses module boundaries: what an identity provider
//! returns, what a connector asks, what the policy engine answers.
//!
//! Nothing here knows about wasmtime or cedar-policy; the plugin module
//! converts from WIT types, the policy module converts to Cedar types.

use std::fmt;

/// A Cedar entity reference: `Type::"id"`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EntityRef {
    /// Fully qualified Cedar type name, e.g. `Oidc::Subject`.
    pub type_name: String,
    /// The entity id.
    pub id: String,
}

impl EntityRef {
    /// Builds a reference from a type name and an id.
    pub fn new(type_name: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            type_name: type_name.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cedar's own literal syntax, with the id escaped as a Cedar string.
        write!(f, "{}::{:?}", self.type_name, self.id)
    }
}

/// A verified caller, as an identity provider described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The principal entity.
    pub principal: EntityRef,
    /// Cedar entity-attribute JSON object for the principal.
    pub attributes: serde_json::Value,
    /// The principal's parents (issuer, account, groups).
    pub parents: Vec<EntityRef>,
    /// Unix seconds at which the credential, and so this identity, expires.
    pub expires_at: u64,
    /// The trust anchor that vouched for the identity (issuer URL, account).
    pub trust_anchor: String,
    /// The identity provider plugin's name.
    pub provider: String,
}

/// One authorization question a connector derived from a call.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzRequest {
    /// The Cedar action, e.g. `Http::Action::"GET"`.
    pub action: EntityRef,
    /// The Cedar resource.
    pub resource: EntityRef,
    /// Cedar entity-attribute JSON object for the resource.
    pub resource_attributes: serde_json::Value,
    /// The resource's parents.
    pub resource_parents: Vec<EntityRef>,
    /// The connector's part of the context (a JSON object); the host adds `gate`.
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// Request facts the host vouches for; they become `context.gate` in Cedar.
#[derive(Debug, Clone, PartialEq)]
pub struct GateFacts {
    /// This attempt's request ID.
    pub request_id: String,
    /// The listener's configured name.
    pub listener: String,
    /// The peer's IP address.
    pub peer_ip: std::net::IpAddr,
    /// The identity provider plugin that authenticated the caller.
    pub identity_provider: String,
    /// The trust anchor that vouched for the caller.
    pub trust_anchor: String,
    /// Whole days since the trust anchor was last reviewed.
    pub trust_anchor_age_days: i64,
    /// Unix seconds at the time of the request.
    pub now_unix: u64,
    /// Whether the caller connected over TLS.
    pub tls: bool,
}
