//! JWK sets (RFC 7517), key selection and signature verification.
//!
//! A key is used only with the algorithm family it was published for
//! (RFC 8725 §3.1): `kty`/`crv` must fit the token's `alg`, and the key's own
//! `alg`, `use` and `key_ops`, when present, must agree. RSA keys shorter
//! than 2048 bits are refused (RFC 7518 §3.3); EC points are checked to be on
//! their curve when decoded.

use ed25519_dalek::Verifier as _;
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::alg::{Alg, KeyFamily};
use super::jose::{parse_object, unb64};
use crate::error::quote;

/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// One entry of a JWK set, with the members we look at.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`, when the entry has one.
    pub kid: Option<String>,
    /// All members, for key material (`n`, `e`, `crv`, `x`, `y`).
    members: Map<String, Value>,
}

/// A parsed JWK set.
#[derive(Debug, Clone)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Why no key was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoiceError {
    /// No entry has the token's `kid` (the JWKS may be stale: refresh).
    UnknownKid(String),
    /// Something else; the reason is final.
    Refused(String),
}

impl JwkSet {
    /// Parses a JWK set document. Entries that are not JSON objects make the
    /// document invalid; entries of unknown types are kept and never match.
    pub fn parse(bytes: &[u8]) -> Result<JwkSet, String> {
        let doc = parse_object(bytes)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err("the document has no `keys` array".to_string());
        };
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Object(members) = entry else {
                return Err("a `keys` entry is not a JSON object".to_string());
            };
            let kid = match members.get("kid") {
                None => None,
                Some(Value::String(kid)) => Some(kid.clone()),
                Some(_) => return Err("a key's `kid` is not a string".to_string()),
            };
            keys.push(Jwk {
                kid,
                members: members.clone(),
            });
        }
        Ok(JwkSet { keys })
    }

    /// Picks the key for a token.
    ///
    /// With a `kid`: the entries with that `kid` that are usable for `alg`;
    /// exactly one must be. Without a `kid`: only if exactly one entry in
    /// the whole set is usable for `alg`.
    pub fn choose(&self, kid: Option<&str>, alg: Alg) -> Result<&Jwk, KeyChoiceError> {
        match kid {
            Some(kid) => {
                let named: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Err(KeyChoiceError::UnknownKid(format!(
                        "no key with kid {} in the issuer's JWKS",
                        quote(kid)
                    )));
                }
                let mut usable = Vec::new();
                let mut why_not = Vec::new();
                for key in named {
                    match key.usable_for(alg) {
                        Ok(()) => usable.push(key),
                        Err(e) => why_not.push(e),
                    }
                }
                match usable[..] {
                    [key] => Ok(key),
                    [] => Err(KeyChoiceError::Refused(format!(
                        "the key with kid {} cannot verify {alg}: {}",
                        quote(kid),
                        why_not.join("; ")
                    ))),
                    _ => Err(KeyChoiceError::Refused(format!(
                        "the issuer's JWKS has {} keys with kid {} usable for {alg}; refusing to guess",
                        usable.len(),
                        quote(kid)
                    ))),
                }
            }
            None => {
                let usable: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.usable_for(alg).is_ok())
                    .collect();
                match usable[..] {
                    [key] => Ok(key),
                    [] => Err(KeyChoiceError::Refused(format!(
                        "the token has no kid and the issuer's JWKS has no key usable for {alg}"
                    ))),
                    _ => Err(KeyChoiceError::Refused(format!(
                        "the token has no kid and the issuer's JWKS has {} keys usable for {alg}",
                        usable.len()
                    ))),
                }
            }
        }
    }
}

impl Jwk {
    fn str_member(&self, name: &str) -> Result<Option<&str>, String> {
        match self.members.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("its `{name}` is not a string")),
        }
    }

    /// Whether this entry may verify `alg` (type, curve, `alg`, `use`,
    /// `key_ops`); the key material itself is checked in [`Jwk::verifier`].
    pub fn usable_for(&self, alg: Alg) -> Result<(), String> {
        let kty = self.str_member("kty")?.unwrap_or("");
        let crv = self.str_member("crv")?;
        let fits = match alg.key_family() {
            KeyFamily::Rsa => kty == "RSA",
            KeyFamily::Ec(curve) => kty == "EC" && crv == Some(curve),
            KeyFamily::Ed25519 => kty == "OKP" && crv == Some("Ed25519"),
        };
        if !fits {
            return Err(format!(
                "it is kty {}{}",
                quote(kty),
                crv.map(|c| format!(" crv {}", quote(c)))
                    .unwrap_or_default()
            ));
        }
        if let Some(key_alg) = self.str_member("alg")?
            && key_alg != alg.name()
        {
            return Err(format!("it is published for alg {}", quote(key_alg)));
        }
        if let Some(key_use) = self.str_member("use")?
            && key_use != "sig"
        {
            return Err(format!("its use is {}, not `sig`", quote(key_use)));
        }
        match self.members.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => {}
            Some(_) => return Err("its key_ops do not include `verify`".to_string()),
        }
        Ok(())
    }

    fn bytes_member(&self, name: &str) -> Result<Vec<u8>, String> {
        let text = self
            .str_member(name)?
            .ok_or_else(|| format!("it has no `{name}`"))?;
        unb64(text).map_err(|e| format!("its `{name}` is not base64url: {e}"))
    }

    /// Builds the verifier for `alg` from this entry's key material.
    pub fn verifier(&self, alg: Alg) -> Result<PublicKey, String> {
        self.usable_for(alg)?;
        match alg.key_family() {
            KeyFamily::Rsa => {
                let n = self.bytes_member("n")?;
                let e = self.bytes_member("e")?;
                if n.len() > MAX_RSA_BITS / 8 + 1 || e.len() > 8 {
                    return Err("its RSA modulus or exponent is too large".to_string());
                }
                let key = rsa::PublicKey::new_with_size_limits(
                    rsa::BoxedUint::from_be_slice_vartime(&n),
                    rsa::BoxedUint::from_be_slice_vartime(&e),
                    MIN_RSA_BITS..=MAX_RSA_BITS,
                )
                .map_err(|err| format!("its RSA key is not acceptable ({err}; at least {MIN_RSA_BITS} bits are required)"))?;
                Ok(PublicKey::Rsa(Box::new(key)))
            }
            KeyFamily::Ec(curve) => {
                let size = if curve == "P-256" { 32 } else { 48 };
                let x = self.bytes_member("x")?;
                let y = self.bytes_member("y")?;
                if x.len() != size || y.len() != size {
                    return Err(format!("its {curve} coordinates are not {size} bytes each"));
                }
                let mut sec1 = Vec::with_capacity(1 + 2 * size);
                sec1.push(0x04);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                let bad_point = |_| format!("its {curve} point is not on the curve");
                if size == 32 {
                    Ok(PublicKey::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(bad_point)?,
                    ))
                } else {
                    Ok(PublicKey::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(bad_point)?,
                    ))
                }
            }
            KeyFamily::Ed25519 => {
                let x = self.bytes_member("x")?;
                let x: [u8; 32] = x
                    .try_into()
                    .map_err(|_| "its Ed25519 key is not 32 bytes".to_string())?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "its Ed25519 key is not a valid point".to_string())?;
                Ok(PublicKey::Ed25519(key))
            }
        }
    }
}

/// A public key ready to verify one algorithm family.
#[derive(Debug)]
pub enum PublicKey {
    Rsa(Box<rsa::PublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Verifies `signature` over `message` with `alg`. Returns `false` for
    /// any failure, including a key of the wrong family.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (PublicKey::Rsa(key), _) => verify_rsa(key, alg, message, signature),
            (PublicKey::P256(key), Alg::ES256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            (PublicKey::P384(key), Alg::ES384) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            (PublicKey::Ed25519(key), Alg::EdDSA) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok())
            }
            _ => false,
        }
    }
}

fn verify_rsa(key: &rsa::PublicKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts as _;
    use rsa::{pkcs1v15, pss};

    // RFC 8017 §8.2.2 step 1: the signature is exactly as long as the modulus.
    if signature.len() != key.size() {
        return false;
    }
    let key = key.clone();
    match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            let Ok(sig) = pkcs1v15::Signature::try_from(signature) else {
                return false;
            };
            match alg {
                Alg::RS256 => pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(message, &sig),
                Alg::RS384 => pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(message, &sig),
                _ => pkcs1v15::VerifyingKey::<Sha512>::new(key).verify(message, &sig),
            }
            .is_ok()
        }
        Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            let Ok(sig) = pss::Signature::try_from(signature) else {
                return false;
            };
            // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
            match alg {
                Alg::PS256 => pss::VerifyingKey::<Sha256>::new(key).verify(message, &sig),
                Alg::PS384 => pss::VerifyingKey::<Sha384>::new(key).verify(message, &sig),
                _ => pss::VerifyingKey::<Sha512>::new(key).verify(message, &sig),
            }
            .is_ok()
        }
        _ => false,
    }
}
