//! The JWS algorithms this plugin can verify (RFC 7518 §3, RFC 8037), and the
//! refusal of everything else.
//!
//! Only public-key algorithms are supported: a verifier holding an issuer's
//! *public* JWKS can never check an HMAC (`HS*`), and `none` is no signature
//! at all (RFC 8725 §3.1, §3.2).

use std::fmt;

use crate::error::quote;

/// A supported JWS `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The JWK key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty` `RSA`.
    Rsa,
    /// `kty` `EC` with the given `crv`.
    Ec(&'static str),
    /// `kty` `OKP` with `crv` `Ed25519`.
    Ed25519,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The registered name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The key family (and curve) a key must have to verify this algorithm.
    pub fn key_family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyFamily::Rsa
            }
            Alg::ES256 => KeyFamily::Ec("P-256"),
            Alg::ES384 => KeyFamily::Ec("P-384"),
            Alg::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// Parses an algorithm name (case-sensitive, as JOSE requires).
    ///
    /// The error explains the refusal: `none` and `HS*` get their own
    /// reasons, anything else is "not supported".
    pub fn parse(name: &str) -> Result<Alg, String> {
        if let Some(alg) = Alg::ALL.into_iter().find(|a| a.name() == name) {
            return Ok(alg);
        }
        if name.eq_ignore_ascii_case("none") {
            return Err(format!(
                "algorithm {} is not allowed: unsigned tokens are never accepted",
                quote(name)
            ));
        }
        if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
            return Err(format!(
                "algorithm {} is not allowed: HMAC algorithms need a shared secret, and only \
                 public-key algorithms from the issuer's JWKS are accepted",
                quote(name)
            ));
        }
        Err(format!(
            "algorithm {} is not supported (supported: {})",
            quote(name),
            Alg::ALL.map(Alg::name).join(", ")
        ))
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_names() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.name()), Ok(alg));
        }
    }

    #[test]
    fn refuses_none_hmac_and_unknown() {
        for name in ["none", "None", "NONE"] {
            let e = Alg::parse(name).unwrap_err();
            assert!(
                e.starts_with(&format!("algorithm `{name}` is not allowed")),
                "{e}"
            );
        }
        for name in ["HS256", "HS384", "HS512", "hs256"] {
            let e = Alg::parse(name).unwrap_err();
            assert!(
                e.starts_with(&format!("algorithm `{name}` is not allowed")),
                "{e}"
            );
            assert!(e.contains("HMAC"), "{e}");
        }
        for name in ["rs256", "ES512", "RSA1_5", "", "Ed25519"] {
            assert!(Alg::parse(name).unwrap_err().contains("is not supported"));
        }
    }

    #[test]
    fn families() {
        assert_eq!(Alg::PS384.key_family(), KeyFamily::Rsa);
        assert_eq!(Alg::ES384.key_family(), KeyFamily::Ec("P-384"));
        assert_eq!(Alg::EdDSA.key_family(), KeyFamily::Ed25519);
    }
}
