//! intentgate AWS IAM identity provider: verifies a serialized, SigV4-signed
//! `sts:GetCallerIdentity` request (the shape GCP workload identity
//! federation uses for AWS subject tokens) by checking it strictly and
//! replaying it to STS through the host, and turns the role session STS
//! names into an `Aws::Role` principal.
//!
//! The logic lives in [`verify`] (which runs [`token`], [`headers`],
//! [`sigv4`], [`clock`], [`sts`] and [`arn`] in order) and [`identity`];
//! this file only adapts it to the WIT bindings. No cryptography happens
//! here: STS verifies the signature.

mod bindings {
    #![allow(unsafe_code)]
    wit_bindgen::generate!({
        world: "identity-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::AwsIamProvider;
    export!(AwsIamProvider with_types_in self);
}

// Each call gets a fresh instance: bump-allocate, never free.
intentgate_guest::use_call_arena!();

mod arn;
mod clock;
mod config;
mod error;
mod headers;
mod identity;
mod json;
mod sigv4;
mod sts;
mod token;
mod verify;
mod xml;

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use bindings::exports::intentgate::plugin::identity_provider::{
    AuthError, Credential, Guest, Identity,
};
use bindings::intentgate::plugin::outbound_http::{self, CacheMode, HttpError, Request};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use config::AwsIamConfig;
use error::AuthFailure;
use sts::{Answer, Outbound, Transport};

struct AwsIamProvider;

/// [`Transport`] through the host's `outbound-http` import, never cached.
struct HostTransport;

impl Transport for HostTransport {
    fn send(&self, request: &Outbound) -> Result<Answer, String> {
        let request = Request {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            cache: CacheMode::NoStore,
        };
        match outbound_http::send(&request) {
            Ok(r) => Ok(Answer {
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

fn authenticate(credential: &[u8]) -> Result<Identity, AuthFailure> {
    let config = AwsIamConfig::parse(&bindings::intentgate::plugin::config::get())
        .map_err(AuthFailure::Unavailable)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuthFailure::Unavailable("the clock is before 1970".to_string()))?
        .as_secs();
    let verified = verify::verify(credential, &config, &HostTransport, now)?;
    let p = identity::principal(&verified);
    Ok(Identity {
        principal: entity(p.principal),
        attributes_json: p.attributes_json,
        parents: p.parents.into_iter().map(entity).collect(),
        expires_at: p.expires_at,
        trust_anchor: p.trust_anchor,
    })
}

impl Guest for AwsIamProvider {
    fn check_config() -> Result<(), String> {
        AwsIamConfig::parse(&bindings::intentgate::plugin::config::get()).map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "aws-iam".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            // STS hosts (and a test endpoint) are operator-configured: the
            // operator's grant decides.
            outbound: vec!["*".to_string()],
            headers: Vec::new(),
        }
    }

    fn cedar_schema() -> String {
        identity::CEDAR_SCHEMA.to_string()
    }

    fn principal_types() -> Vec<String> {
        vec![identity::ROLE_TYPE.to_string()]
    }

    fn authenticate(credential: Credential) -> Result<Identity, AuthError> {
        authenticate(&credential.value).map_err(to_wit)
    }
}
