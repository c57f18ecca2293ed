//! Reading JWTs in tests, WITHOUT verifying them (that is the code under test's job).

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A JWS compact token split into its parts; header and payload decoded, nothing verified.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt {
    pub header: Value,
    pub payload: Value,
    /// The raw signature bytes (empty for `alg: none`).
    pub signature: Vec<u8>,
}

/// Splits and decodes `header.payload.signature`.
pub fn decode_unverified(token: &str) -> Result<UnverifiedJwt> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        bail!(
            "a JWS compact token has 3 dot-separated parts, this has {}",
            parts.len()
        );
    };
    let part = |name: &str, text: &str| -> Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .with_context(|| format!("JWT {name} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("JWT {name} is not JSON"))
    };
    Ok(UnverifiedJwt {
        header: part("header", header)?,
        payload: part("payload", payload)?,
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .context("JWT signature is not base64url")?,
    })
}
