//! Compact JWS parsing (RFC 7515 §7.1) and the JOSE header rules.
//!
//! Parsing is strict: exactly three segments, canonical unpadded base64url,
//! JSON objects without duplicate member names, and a header that names an
//! allow-listed `alg` and does not try to bring its own key or extensions
//! (RFC 8725 §3.1, §3.10).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::alg::Alg;
use crate::error::{AuthFailure, quote, quote_list};

/// Header parameters that would let the token choose its own verification
/// key (or key source), or that we would have to understand to proceed.
const REFUSED_HEADER_PARAMS: &[(&str, &str)] = &[
    ("jku", "keys come only from the issuer's JWKS"),
    ("jwk", "keys come only from the issuer's JWKS"),
    ("x5u", "keys come only from the issuer's JWKS"),
    ("x5c", "keys come only from the issuer's JWKS"),
    ("crit", "no JWS extensions are supported"),
];

/// A compact JWS split into its parts, header checked, nothing verified.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    /// The checked `alg`.
    pub alg: Alg,
    /// The `kid` header parameter, when present.
    pub kid: Option<String>,
    /// The claims set (the decoded payload), not yet trusted.
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Splits and decodes `token`, checking its size and its header against the
/// allowed algorithms and `required_typ`.
pub fn parse<'a>(
    token: &'a [u8],
    max_bytes: usize,
    allowed: &[Alg],
    required_typ: Option<&str>,
) -> Result<UnverifiedJws<'a>, AuthFailure> {
    if token.len() > max_bytes {
        return Err(AuthFailure::Malformed(format!(
            "token is {} bytes, over the {max_bytes}-byte limit",
            token.len()
        )));
    }
    if token.is_empty() {
        return Err(AuthFailure::Malformed("token is empty".to_string()));
    }
    if let Some(b) = token.iter().find(|b| !is_compact_char(**b)) {
        return Err(AuthFailure::Malformed(format!(
            "token contains the byte 0x{b:02x}; a compact JWT has only base64url characters and dots"
        )));
    }
    let segments: Vec<&[u8]> = token.split(|b| *b == b'.').collect();
    if segments.len() == 5 {
        return Err(AuthFailure::Malformed(
            "token has 5 segments: encrypted tokens (JWE) are not supported".to_string(),
        ));
    }
    let [header_b64, payload_b64, signature_b64] = segments[..] else {
        return Err(AuthFailure::Malformed(format!(
            "token has {} segments; a signed JWT has 3",
            segments.len()
        )));
    };

    let header = decode_object(header_b64, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(malformed("header `alg` is not a string")),
        None => return Err(malformed("header has no `alg`")),
    };
    let alg = Alg::parse(alg).map_err(AuthFailure::Invalid)?;
    if !allowed.contains(&alg) {
        return Err(AuthFailure::Invalid(format!(
            "algorithm `{alg}` is not allowed; allowed: {}",
            quote_list(allowed.iter().map(|a| a.name()))
        )));
    }
    for (param, why) in REFUSED_HEADER_PARAMS {
        if header.contains_key(*param) {
            return Err(AuthFailure::Invalid(format!(
                "header parameter `{param}` is not allowed: {why}"
            )));
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("header `kid` is not a string")),
    };
    if let Some(required) = required_typ {
        let typ = match header.get("typ") {
            Some(Value::String(typ)) => Some(typ.as_str()),
            Some(_) => return Err(malformed("header `typ` is not a string")),
            None => None,
        };
        if !typ.is_some_and(|t| typ_matches(t, required)) {
            return Err(AuthFailure::Invalid(format!(
                "token type {} is not the required type {}",
                typ.map_or_else(|| "(none)".to_string(), quote),
                quote(required)
            )));
        }
    }

    let claims = decode_object(payload_b64, "payload")?;
    if signature_b64.is_empty() {
        return Err(malformed("token has an empty signature"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|e| malformed(format!("signature is not valid base64url: {e}")))?;

    let signing_len = header_b64.len() + 1 + payload_b64.len();
    Ok(UnverifiedJws {
        alg,
        kid,
        claims,
        signing_input: &token[..signing_len],
        signature,
    })
}

fn malformed(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Malformed(reason.into())
}

/// base64url alphabet plus `.`.
fn is_compact_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `typ` comparison per RFC 7515 §4.1.9: case-insensitive, and
/// `application/` may be omitted.
fn typ_matches(typ: &str, required: &str) -> bool {
    fn bare(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    bare(typ).eq_ignore_ascii_case(bare(required))
}

/// Decodes one segment into a JSON object.
fn decode_object(b64: &[u8], what: &str) -> Result<Map<String, Value>, AuthFailure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| malformed(format!("{what} is not valid base64url: {e}")))?;
    parse_object(&bytes).map_err(|e| malformed(format!("{what} is not a JSON object: {e}")))
}

/// Parses a JSON object, refusing duplicate member names at the top level
/// (RFC 7515 §5.2 allows rejecting them; two parsers that pick different
/// duplicates are a classic confused-deputy bug).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = (&mut de)
        .deserialize_map(NoDuplicates)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(map)
}

struct NoDuplicates;

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut seen = BTreeMap::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if seen.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate member {}",
                    quote(&key)
                )));
            }
            seen.insert(key, value);
        }
        Ok(seen.into_iter().collect())
    }
}

/// Encodes bytes as unpadded base64url.
#[cfg(test)]
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url (JWK members).
pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(sig)
        )
    }

    const ALLOWED: &[Alg] = &[Alg::RS256, Alg::ES256];

    fn parse_str(t: &str) -> Result<UnverifiedJws<'_>, AuthFailure> {
        parse(t.as_bytes(), 8192, ALLOWED, None)
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"a"}"#,
            b"sig",
        );
        let jws = parse_str(&t).unwrap();
        assert_eq!(jws.alg, Alg::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["sub"], "a");
        assert_eq!(jws.signature, b"sig");
        let dot = t.rfind('.').unwrap();
        assert_eq!(jws.signing_input, &t.as_bytes()[..dot]);
    }

    #[test]
    fn size_cap_comes_first() {
        let t = "x".repeat(9000);
        assert_eq!(
            parse(t.as_bytes(), 8192, ALLOWED, None).unwrap_err(),
            AuthFailure::Malformed("token is 9000 bytes, over the 8192-byte limit".to_string())
        );
    }

    #[test]
    fn refuses_none_hmac_and_unlisted_algorithms() {
        let none = token(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#, b"");
        let e = parse_str(&none).unwrap_err();
        assert!(matches!(e, AuthFailure::Invalid(_)));
        assert!(
            e.reason().starts_with("algorithm `none` is not allowed"),
            "{e:?}"
        );

        let hs = token(r#"{"alg":"HS256"}"#, r#"{"sub":"a"}"#, b"mac");
        let e = parse_str(&hs).unwrap_err();
        assert!(
            e.reason().starts_with("algorithm `HS256` is not allowed"),
            "{e:?}"
        );

        let ps = token(r#"{"alg":"PS256"}"#, r#"{"sub":"a"}"#, b"s");
        assert_eq!(
            parse_str(&ps).unwrap_err(),
            AuthFailure::Invalid(
                "algorithm `PS256` is not allowed; allowed: `RS256`, `ES256`".to_string()
            )
        );
    }

    #[test]
    fn refuses_key_carrying_and_critical_headers() {
        for param in ["jku", "jwk", "x5u", "x5c", "crit"] {
            let h = format!(r#"{{"alg":"RS256","{param}":"x"}}"#);
            let e = parse_str(&token(&h, "{}", b"s")).unwrap_err();
            assert!(
                e.reason()
                    .starts_with(&format!("header parameter `{param}` is not allowed")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn refuses_structural_problems() {
        let cases = [
            (String::new(), "token is empty"),
            ("a.b".to_string(), "2 segments"),
            ("a.b.c.d.e".to_string(), "JWE"),
            ("a b.c.d".to_string(), "byte 0x20"),
            (token(r#"{"alg":"RS256"}"#, "{}", b""), "empty signature"),
            (
                token(r#"{"alg":"RS256","alg":"none"}"#, "{}", b"s"),
                "duplicate member `alg`",
            ),
            (
                token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#, b"s"),
                "duplicate member `sub`",
            ),
            (
                token(r#"["RS256"]"#, "{}", b"s"),
                "header is not a JSON object",
            ),
            (
                token(r#"{"alg":"RS256"}"#, "[1]", b"s"),
                "payload is not a JSON object",
            ),
            (
                token(r#"{"alg":"RS256"}"#, "{} x", b"s"),
                "payload is not a JSON object",
            ),
            (token(r#"{"kid":"a"}"#, "{}", b"s"), "header has no `alg`"),
            (token(r#"{"alg":256}"#, "{}", b"s"), "`alg` is not a string"),
            (
                token(r#"{"alg":"RS256","kid":1}"#, "{}", b"s"),
                "`kid` is not a string",
            ),
            (
                format!("{}=.e30.c2ln", b64(br#"{"alg":"RS256"}"#)),
                "byte 0x3d",
            ),
        ];
        for (t, needle) in cases {
            let e = parse_str(&t).unwrap_err();
            assert!(matches!(e, AuthFailure::Malformed(_)), "{t}: {e:?}");
            assert!(e.reason().contains(needle), "{t}: {e:?}");
        }
        // Non-canonical base64url (trailing bits set) is refused.
        let h = b64(br#"{"alg":"RS256"}"#);
        let canonical = format!("{h}.e30.c2k");
        assert_eq!(parse_str(&canonical).unwrap().signature, b"si");
        assert!(parse_str(&format!("{h}.e30.c2l")).is_err());
    }

    #[test]
    fn required_typ() {
        let t = token(r#"{"alg":"RS256","typ":"application/AT+JWT"}"#, "{}", b"s");
        assert!(parse(t.as_bytes(), 8192, ALLOWED, Some("at+jwt")).is_ok());
        let t = token(r#"{"alg":"RS256","typ":"JWT"}"#, "{}", b"s");
        assert_eq!(
            parse(t.as_bytes(), 8192, ALLOWED, Some("at+jwt")).unwrap_err(),
            AuthFailure::Invalid("token type `JWT` is not the required type `at+jwt`".to_string())
        );
        let t = token(r#"{"alg":"RS256"}"#, "{}", b"s");
        let e = parse(t.as_bytes(), 8192, ALLOWED, Some("at+jwt")).unwrap_err();
        assert!(e.reason().contains("(none)"), "{e:?}");
    }
}
