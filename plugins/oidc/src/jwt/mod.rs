//! JWT verification for OIDC tokens (RFC 7519, RFC 7515, RFC 8725).
//!
//! The order matters and is fixed:
//!
//! 1. size cap, before any parsing ([`jose::parse`]);
//! 2. split and decode; the header's `alg` must be allow-listed (never
//!    `none` or `HS*`), and `jku`/`jwk`/`x5u`/`x5c`/`crit` are refused;
//! 3. discovery through the host; the document must name exactly the
//!    configured issuer, and its `jwks_uri` is used (never a URL from the
//!    token);
//! 4. the JWK set through the host's cache; an unknown `kid` triggers one
//!    `refresh` fetch (the host rate-limits those);
//! 5. key choice by `kid` (or the single usable key when there is no
//!    `kid`), the key's type/curve/`alg`/`use` must fit the token's `alg`;
//! 6. the signature;
//! 7. the claims ([`claims::check`]), only once the signature holds.

pub mod alg;
pub mod claims;
pub mod jose;
pub mod jwk;

#[cfg(test)]
mod testkeys;
#[cfg(test)]
mod tests;

use crate::config::OidcConfig;
use crate::error::{AuthFailure, quote};
use crate::fetch::{self, CacheMode, Fetch};
use claims::VerifiedClaims;
use jwk::{JwkSet, KeyChoiceError};

/// Verifies `token` against `config` at time `now` (Unix seconds).
pub fn verify(
    token: &[u8],
    config: &OidcConfig,
    fetcher: &dyn Fetch,
    now: u64,
) -> Result<VerifiedClaims, AuthFailure> {
    let jws = jose::parse(
        token,
        config.max_token_bytes,
        &config.algorithms,
        config.required_typ.as_deref(),
    )?;
    let jwks_uri = fetch::jwks_uri(fetcher, &config.issuer, config.allows_plain_http())?;

    let kid = jws.kid.as_deref();
    let cached = load_jwks(fetcher, &jwks_uri, CacheMode::UseCache)?;
    let refreshed;
    let key = match cached.choose(kid, jws.alg) {
        Ok(key) => key,
        Err(KeyChoiceError::UnknownKid(_)) => {
            // OIDC Core §10.1.1: a new kid signals key rotation.
            refreshed = load_jwks(fetcher, &jwks_uri, CacheMode::Refresh)?;
            refreshed.choose(kid, jws.alg).map_err(refused)?
        }
        Err(e) => return Err(refused(e)),
    };
    let verifier = key.verifier(jws.alg).map_err(|e| {
        AuthFailure::Invalid(format!(
            "the issuer's key{} cannot be used: {e}",
            kid.map(|k| format!(" with kid {}", quote(k)))
                .unwrap_or_default()
        ))
    })?;
    if !verifier.verify(jws.alg, jws.signing_input, &jws.signature) {
        return Err(AuthFailure::Invalid(
            "signature does not verify".to_string(),
        ));
    }
    claims::check(&jws.claims, config, now)
}

fn refused(e: KeyChoiceError) -> AuthFailure {
    match e {
        KeyChoiceError::UnknownKid(reason) | KeyChoiceError::Refused(reason) => {
            AuthFailure::Invalid(reason)
        }
    }
}

fn load_jwks(fetcher: &dyn Fetch, url: &str, cache: CacheMode) -> Result<JwkSet, AuthFailure> {
    let body = fetch::get_ok(fetcher, url, cache, "jwks")?;
    JwkSet::parse(&body).map_err(|e| {
        AuthFailure::Unavailable(format!(
            "jwks fetch failed: the JWK set at {url} is invalid: {e}"
        ))
    })
}
