//! intentgate OIDC identity provider: verifies OIDC JWTs (RFC 7519,
//! RFC 8725) against an operator-configured issuer, fetching discovery and
//! the JWK set through the host (which caches them).
//!
//! The logic lives in [`config`], [`jwt`], [`fetch`] and [`identity`]; this
//! file only adapts it to the WIT bindings.

mod bindings {
    #![allow(unsafe_code)]
    wit_bindgen::generate!({
        world: "identity-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::OidcProvider;
    export!(OidcProvider with_types_in self);
}

// Each call gets a fresh instance: bump-allocate, never free.
intentgate_guest::use_call_arena!();

mod config;
mod error;
mod fetch;
mod identity;
mod jwt;

use std::time::{SystemTime, UNIX_EPOCH};

use bindings::exports::intentgate::plugin::identity_provider::{
    AuthError, Credential, Guest, Identity,
};
use bindings::intentgate::plugin::outbound_http::{self, HttpError, Request};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use config::OidcConfig;
use error::AuthFailure;
use fetch::{CacheMode, Fetch, Response};

struct OidcProvider;

/// [`Fetch`] through the host's `outbound-http` import.
struct HostFetch;

impl Fetch for HostFetch {
    fn get(&self, url: &str, cache: CacheMode) -> Result<Response, String> {
        let request = Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: vec![("accept".to_string(), "application/json".to_string())],
            body: Vec::new(),
            cache: match cache {
                CacheMode::UseCache => outbound_http::CacheMode::UseCache,
                CacheMode::Refresh => outbound_http::CacheMode::Refresh,
            },
        };
        match outbound_http::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                body: r.body,
            }),
            Err(HttpError::Denied(s)) => Err(format!("denied by the host: {s}")),
            Err(HttpError::Invalid(s)) => Err(format!("invalid request: {s}")),
            Err(HttpError::Timeout) => Err("timed out".to_string()),
            Err(HttpError::TooLarge) => Err("response over the host's size cap".to_string()),
            Err(HttpError::Unavailable(s)) => Err(s),
        }
    }
}

fn entity((type_name, id): (String, String)) -> EntityRef {
    EntityRef { type_name, id }
}

fn to_wit(e: AuthFailure) -> AuthError {
    match e {
        AuthFailure::Malformed(s) => AuthError::Malformed(s),
        AuthFailure::Invalid(s) => AuthError::Invalid(s),
        AuthFailure::Expired(s) => AuthError::Expired(s),
        AuthFailure::Untrusted(s) => AuthError::Untrusted(s),
        AuthFailure::Unavailable(s) => AuthError::Unavailable(s),
    }
}

fn authenticate(token: &[u8]) -> Result<Identity, AuthFailure> {
    let config = OidcConfig::parse(&bindings::intentgate::plugin::config::get())
        .map_err(AuthFailure::Unavailable)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuthFailure::Unavailable("the clock is before 1970".to_string()))?
        .as_secs();
    let claims = jwt::verify(token, &config, &HostFetch, now)?;
    let p = identity::principal(&claims)?;
    Ok(Identity {
        principal: entity(p.principal),
        attributes_json: p.attributes_json,
        parents: p.parents.into_iter().map(entity).collect(),
        expires_at: p.expires_at,
        trust_anchor: p.trust_anchor,
    })
}

impl Guest for OidcProvider {
    fn check_config() -> Result<(), String> {
        OidcConfig::parse(&bindings::intentgate::plugin::config::get()).map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "oidc".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            // The issuer is operator-configured: the operator's grant decides.
            outbound: vec!["*".to_string()],
            headers: Vec::new(),
        }
    }

    fn cedar_schema() -> String {
        identity::CEDAR_SCHEMA.to_string()
    }

    fn principal_types() -> Vec<String> {
        vec![identity::SUBJECT_TYPE.to_string()]
    }

    fn authenticate(credential: Credential) -> Result<Identity, AuthError> {
        authenticate(&credential.value).map_err(to_wit)
    }
}
