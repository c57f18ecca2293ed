//! End-to-end tests of [`super::verify`]: real signatures for every
//! supported algorithm, a fake host fetcher that records what was asked.

use std::cell::RefCell;
use std::convert::Infallible;

use ed25519_dalek::Signer as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

use super::alg::Alg;
use super::jose::b64;
use super::testkeys::*;
use super::verify;
use crate::config::OidcConfig;
use crate::error::AuthFailure;
use crate::fetch::{CacheMode, Fetch, Response};

const ISSUER: &str = "https://id.example.com";
const DISCOVERY: &str = "https://id.example.com/.well-known/openid-configuration";
const JWKS: &str = "https://id.example.com/jwks";
const NOW: u64 = 1_700_000_000;

/// A deterministic RNG for PSS salts (tests only).
struct TestRng(u64);

impl rsa::rand_core::TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rsa::rand_core::TryCryptoRng for TestRng {}

fn uint(hex: &str) -> rsa::BoxedUint {
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    rsa::BoxedUint::from_be_slice_vartime(&bytes)
}

fn rsa_key(n: &str, d: &str, p: &str, q: &str) -> rsa::PrivateKey {
    rsa::PrivateKey::from_components(uint(n), uint("10001"), uint(d), vec![uint(p), uint(q)])
        .unwrap()
}

enum TestKey {
    Rsa(rsa::PrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
}

impl TestKey {
    fn rsa() -> Self {
        TestKey::Rsa(rsa_key(RSA2048_N, RSA2048_D, RSA2048_P, RSA2048_Q))
    }
    fn rsa1024() -> Self {
        TestKey::Rsa(rsa_key(RSA1024_N, RSA1024_D, RSA1024_P, RSA1024_Q))
    }
    fn p256(seed: u8) -> Self {
        TestKey::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }
    fn p384(seed: u8) -> Self {
        TestKey::P384(p384::ecdsa::SigningKey::from_slice(&[seed; 48]).unwrap())
    }
    fn ed(seed: u8) -> Self {
        TestKey::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    /// The public JWK, with `kid`.
    fn jwk(&self, kid: &str) -> Value {
        use rsa::traits::PublicKeyParts as _;
        match self {
            TestKey::Rsa(k) => json!({
                "kty": "RSA", "kid": kid,
                "n": b64(&k.n().to_be_bytes_trimmed_vartime()),
                "e": b64(&k.e().to_be_bytes_trimmed_vartime()),
            }),
            TestKey::P256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let b = point.as_bytes();
                json!({"kty":"EC","crv":"P-256","kid":kid,"x":b64(&b[1..33]),"y":b64(&b[33..])})
            }
            TestKey::P384(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let b = point.as_bytes();
                json!({"kty":"EC","crv":"P-384","kid":kid,"x":b64(&b[1..49]),"y":b64(&b[49..])})
            }
            TestKey::Ed(k) => json!({
                "kty":"OKP","crv":"Ed25519","kid":kid,"x":b64(k.verifying_key().as_bytes())
            }),
        }
    }

    fn sign(&self, alg: Alg, msg: &[u8]) -> Vec<u8> {
        use rsa::{pkcs1v15, pss};
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        match (self, alg) {
            (TestKey::Rsa(k), Alg::RS256) => pkcs1v15::SigningKey::<Sha256>::new(k.clone())
                .sign(msg)
                .to_vec(),
            (TestKey::Rsa(k), Alg::RS384) => pkcs1v15::SigningKey::<Sha384>::new(k.clone())
                .sign(msg)
                .to_vec(),
            (TestKey::Rsa(k), Alg::RS512) => pkcs1v15::SigningKey::<Sha512>::new(k.clone())
                .sign(msg)
                .to_vec(),
            (TestKey::Rsa(k), Alg::PS256) => pss::SigningKey::<Sha256>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
            (TestKey::Rsa(k), Alg::PS384) => pss::SigningKey::<Sha384>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
            (TestKey::Rsa(k), Alg::PS512) => pss::SigningKey::<Sha512>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
            (TestKey::P256(k), Alg::ES256) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            (TestKey::P384(k), Alg::ES384) => {
                let sig: p384::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            (TestKey::Ed(k), Alg::EdDSA) => k.sign(msg).to_bytes().to_vec(),
            _ => unreachable!("test key does not do {alg}"),
        }
    }
}

/// Builds a signed token from a header and claims.
fn token(key: &TestKey, alg: Alg, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "alice", "exp": NOW + 300, "iat": NOW})
}

fn header(alg: Alg, kid: &str) -> Value {
    json!({"alg": alg.name(), "kid": kid, "typ": "JWT"})
}

/// The host, faked: a discovery document and a JWK set, with an optional
/// different set for `refresh` fetches. Records every request.
struct FakeHost {
    discovery: Result<Response, String>,
    jwks: Result<Response, String>,
    refreshed_jwks: Option<Vec<Value>>,
    log: RefCell<Vec<(String, CacheMode)>>,
}

fn ok(v: Value) -> Result<Response, String> {
    Ok(Response {
        status: 200,
        body: v.to_string().into_bytes(),
    })
}

impl FakeHost {
    fn new(keys: Vec<Value>) -> Self {
        FakeHost {
            discovery: ok(json!({"issuer": ISSUER, "jwks_uri": JWKS})),
            jwks: ok(json!({ "keys": keys })),
            refreshed_jwks: None,
            log: RefCell::new(Vec::new()),
        }
    }
    fn requests(&self) -> Vec<(String, CacheMode)> {
        self.log.borrow().clone()
    }
}

impl Fetch for FakeHost {
    fn get(&self, url: &str, cache: CacheMode) -> Result<Response, String> {
        self.log.borrow_mut().push((url.to_string(), cache));
        match url {
            DISCOVERY => self.discovery.clone(),
            JWKS => match (&self.refreshed_jwks, cache) {
                (Some(keys), CacheMode::Refresh) => ok(json!({ "keys": keys })),
                _ => self.jwks.clone(),
            },
            _ => Err(format!("denied by the host: {url}")),
        }
    }
}

fn config(extra: &str) -> OidcConfig {
    OidcConfig::parse(&format!(
        r#"{{"issuer":"{ISSUER}","audiences":["api"],"algorithms":["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","EdDSA"]{extra}}}"#
    ))
    .unwrap()
}

fn run(host: &FakeHost, token: &str) -> Result<super::claims::VerifiedClaims, AuthFailure> {
    verify(token.as_bytes(), &config(""), host, NOW)
}

fn invalid(reason: &str) -> AuthFailure {
    AuthFailure::Invalid(reason.to_string())
}

#[test]
fn every_algorithm_verifies() {
    let cases = [
        (TestKey::rsa(), Alg::RS256),
        (TestKey::rsa(), Alg::RS384),
        (TestKey::rsa(), Alg::RS512),
        (TestKey::rsa(), Alg::PS256),
        (TestKey::rsa(), Alg::PS384),
        (TestKey::rsa(), Alg::PS512),
        (TestKey::p256(3), Alg::ES256),
        (TestKey::p384(4), Alg::ES384),
        (TestKey::ed(5), Alg::EdDSA),
    ];
    for (key, alg) in cases {
        let host = FakeHost::new(vec![key.jwk("k1")]);
        let t = token(&key, alg, header(alg, "k1"), claims());
        let verified = run(&host, &t).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(verified.sub, "alice");
        assert_eq!(
            host.requests(),
            vec![
                (DISCOVERY.to_string(), CacheMode::UseCache),
                (JWKS.to_string(), CacheMode::UseCache)
            ]
        );

        // Flip one payload character: the signature no longer holds.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut altered = claims();
        altered["sub"] = json!("mallory");
        parts[1] = b64(altered.to_string().as_bytes());
        assert_eq!(
            run(&host, &parts.join(".")).unwrap_err(),
            invalid("signature does not verify"),
            "{alg}"
        );
    }
}

#[test]
fn signature_by_another_key_fails() {
    let signer = TestKey::p256(1);
    let published = TestKey::p256(2);
    let host = FakeHost::new(vec![published.jwk("k1")]);
    let t = token(&signer, Alg::ES256, header(Alg::ES256, "k1"), claims());
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("signature does not verify")
    );
}

#[test]
fn malformed_signatures_fail_cleanly() {
    let key = TestKey::rsa();
    let host = FakeHost::new(vec![key.jwk("k1"), TestKey::p256(1).jwk("e1")]);
    let t = token(&key, Alg::RS256, header(Alg::RS256, "k1"), claims());
    let input = &t[..t.rfind('.').unwrap()];
    for sig in [vec![0u8; 255], vec![0u8; 256], vec![0u8; 257], vec![1u8]] {
        let forged = format!("{input}.{}", b64(&sig));
        assert_eq!(
            run(&host, &forged).unwrap_err(),
            invalid("signature does not verify")
        );
    }
    // ES256 wants raw r||s (64 bytes), not DER.
    let ec = TestKey::p256(1);
    let t = token(&ec, Alg::ES256, header(Alg::ES256, "e1"), claims());
    let input = &t[..t.rfind('.').unwrap()];
    let TestKey::P256(sk) = &ec else {
        unreachable!()
    };
    let sig: p256::ecdsa::Signature = rsa::signature::Signer::sign(sk, input.as_bytes());
    let der = sig.to_der();
    let forged = format!("{input}.{}", b64(der.as_bytes()));
    assert_eq!(
        run(&host, &forged).unwrap_err(),
        invalid("signature does not verify")
    );
}

#[test]
fn unknown_kid_refreshes_once_then_succeeds() {
    let old = TestKey::p256(1);
    let new = TestKey::p256(2);
    let mut host = FakeHost::new(vec![old.jwk("old")]);
    host.refreshed_jwks = Some(vec![old.jwk("old"), new.jwk("new")]);
    let t = token(&new, Alg::ES256, header(Alg::ES256, "new"), claims());
    assert!(run(&host, &t).is_ok());
    assert_eq!(
        host.requests(),
        vec![
            (DISCOVERY.to_string(), CacheMode::UseCache),
            (JWKS.to_string(), CacheMode::UseCache),
            (JWKS.to_string(), CacheMode::Refresh),
        ]
    );
}

#[test]
fn unknown_kid_after_refresh_is_refused() {
    let key = TestKey::p256(1);
    let host = FakeHost::new(vec![key.jwk("k1")]);
    let t = token(&key, Alg::ES256, header(Alg::ES256, "nope"), claims());
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("no key with kid `nope` in the issuer's JWKS")
    );
    let refreshes = host
        .requests()
        .iter()
        .filter(|(_, c)| *c == CacheMode::Refresh)
        .count();
    assert_eq!(refreshes, 1);
}

#[test]
fn no_kid_needs_exactly_one_usable_key() {
    let rsa = TestKey::rsa();
    let ec = TestKey::p256(1);
    let no_kid = json!({"alg": "RS256"});
    let t = token(&rsa, Alg::RS256, no_kid.clone(), claims());

    let host = FakeHost::new(vec![rsa.jwk("r"), ec.jwk("e")]);
    assert!(run(&host, &t).is_ok(), "one RSA key among others");

    let mut second = rsa.jwk("r2");
    second["n"] = TestKey::rsa().jwk("x")["n"].clone();
    let host = FakeHost::new(vec![rsa.jwk("r"), second]);
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("the token has no kid and the issuer's JWKS has 2 keys usable for RS256")
    );

    let host = FakeHost::new(vec![ec.jwk("e")]);
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("the token has no kid and the issuer's JWKS has no key usable for RS256")
    );
    assert!(
        !host
            .requests()
            .iter()
            .any(|(_, c)| *c == CacheMode::Refresh)
    );
}

#[test]
fn key_must_fit_the_algorithm() {
    let rsa = TestKey::rsa();
    let ec = TestKey::p256(1);
    let p384 = TestKey::p384(1);

    // kid points at an RSA key, token says ES256.
    let host = FakeHost::new(vec![rsa.jwk("k")]);
    let t = token(&ec, Alg::ES256, header(Alg::ES256, "k"), claims());
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("the key with kid `k` cannot verify ES256: it is kty `RSA`")
    );

    // P-384 key published, token claims ES256.
    let host = FakeHost::new(vec![p384.jwk("k")]);
    assert!(run(&host, &t).unwrap_err().reason().contains("crv `P-384`"));

    // The key's own `alg`, `use` and `key_ops` must agree.
    for (member, value, needle) in [
        ("alg", json!("RS384"), "published for alg `RS384`"),
        ("use", json!("enc"), "use is `enc`"),
        (
            "key_ops",
            json!(["encrypt"]),
            "key_ops do not include `verify`",
        ),
    ] {
        let mut jwk = rsa.jwk("k");
        jwk[member] = value;
        let host = FakeHost::new(vec![jwk]);
        let t = token(&rsa, Alg::RS256, header(Alg::RS256, "k"), claims());
        let e = run(&host, &t).unwrap_err();
        assert!(e.reason().contains(needle), "{e:?}");
    }
    let mut jwk = rsa.jwk("k");
    jwk["alg"] = json!("RS256");
    jwk["use"] = json!("sig");
    jwk["key_ops"] = json!(["verify"]);
    let host = FakeHost::new(vec![jwk]);
    let t = token(&rsa, Alg::RS256, header(Alg::RS256, "k"), claims());
    assert!(run(&host, &t).is_ok());
}

#[test]
fn weak_or_broken_keys_are_refused() {
    let small = TestKey::rsa1024();
    let host = FakeHost::new(vec![small.jwk("k")]);
    let t = token(&small, Alg::RS256, header(Alg::RS256, "k"), claims());
    let e = run(&host, &t).unwrap_err();
    assert!(e.reason().contains("at least 2048 bits"), "{e:?}");

    // A P-256 point that is not on the curve (invalid-curve attack).
    let ec = TestKey::p256(1);
    let mut jwk = ec.jwk("k");
    jwk["y"] = json!(b64(&[7u8; 32]));
    let host = FakeHost::new(vec![jwk]);
    let t = token(&ec, Alg::ES256, header(Alg::ES256, "k"), claims());
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid(
            "the issuer's key with kid `k` cannot be used: its P-256 point is not on the curve"
        )
    );
}

#[test]
fn hmac_with_the_public_key_as_secret_is_refused_before_any_fetch() {
    // Classic alg confusion: HS256 keyed with the RSA public key bytes.
    let host = FakeHost::new(vec![TestKey::rsa().jwk("k")]);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"k"}"#),
        b64(claims().to_string().as_bytes())
    );
    let t = format!("{input}.{}", b64(&[0u8; 32]));
    let e = run(&host, &t).unwrap_err();
    assert!(
        e.reason().starts_with("algorithm `HS256` is not allowed"),
        "{e:?}"
    );
    assert!(host.requests().is_empty());
}

#[test]
fn unlisted_algorithm_and_size_are_refused_before_any_fetch() {
    let key = TestKey::p256(1);
    let host = FakeHost::new(vec![key.jwk("k")]);
    let t = token(&key, Alg::ES256, header(Alg::ES256, "k"), claims());
    let rs_only = OidcConfig::parse(&format!(
        r#"{{"issuer":"{ISSUER}","audiences":["api"],"algorithms":["RS256"]}}"#
    ))
    .unwrap();
    assert_eq!(
        verify(t.as_bytes(), &rs_only, &host, NOW).unwrap_err(),
        invalid("algorithm `ES256` is not allowed; allowed: `RS256`")
    );
    let tiny = OidcConfig::parse(&format!(
        r#"{{"issuer":"{ISSUER}","audiences":["api"],"max_token_bytes":100}}"#
    ))
    .unwrap();
    assert!(matches!(
        verify(t.as_bytes(), &tiny, &host, NOW),
        Err(AuthFailure::Malformed(_))
    ));
    assert!(host.requests().is_empty());
}

#[test]
fn discovery_must_name_the_configured_issuer() {
    let key = TestKey::p256(1);
    let t = token(&key, Alg::ES256, header(Alg::ES256, "k"), claims());

    let mut host = FakeHost::new(vec![key.jwk("k")]);
    host.discovery = ok(json!({"issuer": "https://evil.example", "jwks_uri": JWKS}));
    let e = run(&host, &t).unwrap_err();
    assert!(matches!(e, AuthFailure::Untrusted(_)), "{e:?}");
    assert!(
        e.reason()
            .starts_with("issuer `https://evil.example` is not the configured issuer")
    );

    let mut host = FakeHost::new(vec![key.jwk("k")]);
    host.discovery = ok(json!({"issuer": ISSUER, "jwks_uri": "http://id.example.com/jwks"}));
    assert!(matches!(run(&host, &t), Err(AuthFailure::Untrusted(_))));

    let mut host = FakeHost::new(vec![key.jwk("k")]);
    host.discovery = ok(json!({"issuer": ISSUER}));
    assert!(matches!(run(&host, &t), Err(AuthFailure::Unavailable(_))));
}

#[test]
fn fetch_failures_are_unavailable() {
    let key = TestKey::p256(1);
    let t = token(&key, Alg::ES256, header(Alg::ES256, "k"), claims());

    let mut host = FakeHost::new(vec![key.jwk("k")]);
    host.discovery = Ok(Response {
        status: 503,
        body: Vec::new(),
    });
    assert_eq!(
        run(&host, &t).unwrap_err(),
        AuthFailure::Unavailable(format!(
            "discovery document fetch failed: GET {DISCOVERY} answered HTTP 503"
        ))
    );

    let mut host = FakeHost::new(vec![key.jwk("k")]);
    host.jwks = Err("timed out".to_string());
    assert_eq!(
        run(&host, &t).unwrap_err(),
        AuthFailure::Unavailable(format!("jwks fetch failed: GET {JWKS}: timed out"))
    );

    let mut host = FakeHost::new(vec![]);
    host.jwks = ok(json!({"nokeys": []}));
    let e = run(&host, &t).unwrap_err();
    assert!(matches!(e, AuthFailure::Unavailable(_)));
    assert!(e.reason().starts_with("jwks fetch failed"), "{e:?}");
}

#[test]
fn claims_are_checked_after_the_signature() {
    let key = TestKey::ed(9);
    let host = FakeHost::new(vec![key.jwk("k")]);
    let mut c = claims();
    c["exp"] = json!(NOW - 120);
    let t = token(&key, Alg::EdDSA, header(Alg::EdDSA, "k"), c);
    assert!(matches!(run(&host, &t), Err(AuthFailure::Expired(_))));

    let mut c = claims();
    c["aud"] = json!("someone-else");
    let t = token(&key, Alg::EdDSA, header(Alg::EdDSA, "k"), c);
    assert_eq!(
        run(&host, &t).unwrap_err(),
        invalid("audience `someone-else` is not accepted; expected one of `api`")
    );
}

#[test]
fn required_typ_is_enforced() {
    let key = TestKey::p256(1);
    let host = FakeHost::new(vec![key.jwk("k")]);
    let cfg = OidcConfig::parse(&format!(
        r#"{{"issuer":"{ISSUER}","audiences":["api"],"required_typ":"at+jwt"}}"#
    ))
    .unwrap();
    let t = token(&key, Alg::ES256, header(Alg::ES256, "k"), claims());
    assert!(matches!(
        verify(t.as_bytes(), &cfg, &host, NOW),
        Err(AuthFailure::Invalid(_))
    ));
    let t = token(
        &key,
        Alg::ES256,
        json!({"alg":"ES256","kid":"k","typ":"at+jwt"}),
        claims(),
    );
    assert!(verify(t.as_bytes(), &cfg, &host, NOW).is_ok());
}
