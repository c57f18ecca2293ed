//! Tests of the harness against the real peers: the OIDC issuer serves what a verifier needs,
//! and its control server mints tokens of the advertised shapes; the echo upstream echoes.
//!
//! Needs Node.js and `scripts/ensure-peers`.

// clippy's allow-unwrap-in-tests covers `#[test]` fns, not the helpers beside them.
#![allow(clippy::unwrap_used, reason = "test helpers")]

use intentgate_tests::jwt::decode_unverified;
use intentgate_tests::{EchoUpstream, MintRequest, OidcIssuer, TokenKind, http};
use serde_json::Value;

fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn issuer_serves_discovery_and_public_jwks() {
    let issuer = OidcIssuer::start().await.unwrap();
    assert!(
        issuer.url().starts_with("http://127.0.0.1:"),
        "issuer must advertise the loopback IP it binds, not localhost: {}",
        issuer.url()
    );

    let discovery = http::get(&issuer.discovery_url()).await.unwrap();
    assert_eq!(discovery.status, 200);
    let discovery = discovery.json().unwrap();
    assert_eq!(discovery["issuer"], issuer.url());
    assert_eq!(discovery["jwks_uri"], issuer.jwks_url());

    let jwks = http::get(&issuer.jwks_url()).await.unwrap().json().unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let mut algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "RS256"]);
    for key in keys {
        assert!(key["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "JWKS leaks private field {private}: {key}"
            );
        }
    }

    let stats = issuer.stats().await.unwrap();
    assert_eq!(stats.discovery_fetches(), 1);
    assert_eq!(stats.jwks_fetches(), 1);
}

#[tokio::test]
async fn minted_tokens_have_the_advertised_shapes() {
    let issuer = OidcIssuer::start().await.unwrap();
    let jwks = http::get(&issuer.jwks_url()).await.unwrap().json().unwrap();
    let published = jwks_kids(&jwks);
    let rsa_kid = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "RS256")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = now();

    let valid = issuer
        .mint_for(TokenKind::Valid, "bob", "quickstart")
        .await
        .unwrap();
    let jwt = decode_unverified(&valid).unwrap();
    assert_eq!(jwt.header["alg"], "RS256");
    assert_eq!(jwt.header["kid"], rsa_kid.as_str());
    assert_eq!(jwt.payload["iss"], issuer.url());
    assert_eq!(jwt.payload["aud"], "quickstart");
    assert_eq!(jwt.payload["sub"], "bob");
    let (iat, nbf, exp) = (
        jwt.payload["iat"].as_i64().unwrap(),
        jwt.payload["nbf"].as_i64().unwrap(),
        jwt.payload["exp"].as_i64().unwrap(),
    );
    assert!((iat - t).abs() <= 5, "iat {iat} vs now {t}");
    assert_eq!(nbf, iat - 1);
    assert_eq!(exp, iat + 600);
    assert_eq!(jwt.signature.len(), 256, "RS256 with a 2048-bit key");

    let es = decode_unverified(
        &issuer
            .mint(TokenKind::ValidEs256, "quickstart")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(es.header["alg"], "ES256");
    assert!(published.contains(&es.header["kid"].as_str().unwrap().to_owned()));
    assert_eq!(es.signature.len(), 64, "ES256 signatures are r||s");

    let none =
        decode_unverified(&issuer.mint(TokenKind::AlgNone, "quickstart").await.unwrap()).unwrap();
    assert_eq!(none.header["alg"], "none");
    assert!(none.signature.is_empty());

    let hs = decode_unverified(
        &issuer
            .mint(TokenKind::Hs256RsaPublicKey, "quickstart")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hs.header["alg"], "HS256");
    assert_eq!(hs.header["kid"], rsa_kid.as_str());
    assert_eq!(hs.signature.len(), 32);

    let claims = |token: &str| decode_unverified(token).unwrap().payload;
    let wrong_aud = claims(
        &issuer
            .mint(TokenKind::WrongAud, "quickstart")
            .await
            .unwrap(),
    );
    assert_eq!(wrong_aud["aud"], "not-quickstart");
    let wrong_iss = claims(
        &issuer
            .mint(TokenKind::WrongIss, "quickstart")
            .await
            .unwrap(),
    );
    assert_ne!(wrong_iss["iss"], issuer.url());
    let expired = claims(&issuer.mint(TokenKind::Expired, "quickstart").await.unwrap());
    assert!(expired["exp"].as_i64().unwrap() <= t - 3500);
    let early = claims(
        &issuer
            .mint(TokenKind::NotYetValid, "quickstart")
            .await
            .unwrap(),
    );
    assert!(early["nbf"].as_i64().unwrap() >= t + 3500);

    let unknown = decode_unverified(
        &issuer
            .mint(TokenKind::UnknownKid, "quickstart")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(unknown.header["alg"], "RS256");
    assert!(!published.contains(&unknown.header["kid"].as_str().unwrap().to_owned()));

    let tampered = issuer
        .mint(TokenKind::Tampered, "quickstart")
        .await
        .unwrap();
    assert_eq!(claims(&tampered)["sub"], "alice-admin");

    let oversized = issuer
        .mint(TokenKind::Oversized, "quickstart")
        .await
        .unwrap();
    assert!(oversized.len() > 16 * 1024, "{} bytes", oversized.len());

    let groups = issuer
        .mint_with(
            &MintRequest::new(TokenKind::Groups)
                .aud("quickstart")
                .groups(["payments"])
                .claim("scope", "orders.read"),
        )
        .await
        .unwrap();
    let groups = claims(&groups);
    assert_eq!(groups["groups"], serde_json::json!(["payments"]));
    assert_eq!(groups["scope"], "orders.read");

    // Every kind is known to the control server; an unknown one is a 400, not a token.
    for kind in TokenKind::ALL {
        issuer.mint(kind, "quickstart").await.unwrap();
    }
    let bad = http::post_json(
        &format!("{}/mint", issuer.control_url()),
        &serde_json::json!({ "kind": "no-such-kind" }),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn rotation_publishes_the_new_key_and_outage_fails_the_issuer() {
    let issuer = OidcIssuer::start().await.unwrap();
    let before = jwks_kids(&http::get(&issuer.jwks_url()).await.unwrap().json().unwrap());

    let token = issuer.mint(TokenKind::Rotated, "quickstart").await.unwrap();
    let kid = decode_unverified(&token).unwrap().header["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!before.contains(&kid), "rotated kid must be new");
    let after = jwks_kids(&http::get(&issuer.jwks_url()).await.unwrap().json().unwrap());
    assert!(
        after.contains(&kid),
        "rotated kid must be published: {after:?}"
    );
    assert!(
        before.iter().all(|k| after.contains(k)),
        "old keys stay published"
    );
    assert_eq!(issuer.stats().await.unwrap().rotated_kids, [kid]);

    issuer.set_outage(true).await.unwrap();
    assert_eq!(http::get(&issuer.jwks_url()).await.unwrap().status, 503);
    issuer.set_outage(false).await.unwrap();
    assert_eq!(http::get(&issuer.jwks_url()).await.unwrap().status, 200);
}

#[tokio::test]
async fn echo_upstream_shows_every_header_as_received() {
    let upstream = EchoUpstream::start().await.unwrap();
    assert!(upstream.url().starts_with("http://127.0.0.1:"));

    let response = http::get_with(
        &format!("{}/orders/42?expand=items", upstream.url()),
        &[("authorization", "Bearer first"), ("x-tenant", "acme")],
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let echo = response.json().unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/orders/42");
    assert_eq!(echo["query"], "expand=items");
    assert_eq!(echo["headers"]["authorization"], "Bearer first");
    assert_eq!(echo["headers"]["x-tenant"], "acme");
    let authorizations: Vec<&Value> = echo["raw_headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("authorization")
        })
        .collect();
    assert_eq!(authorizations.len(), 1);

    let post = http::send(
        http::Method::POST,
        &format!("{}/orders", upstream.url()),
        &[("x-echo-status", "503")],
        "{\"id\":1}",
    )
    .await
    .unwrap();
    assert_eq!(post.status, 503);
    assert_eq!(post.json().unwrap()["body"], "{\"id\":1}");
}

#[tokio::test]
async fn peers_go_away_when_dropped() {
    let issuer = OidcIssuer::start().await.unwrap();
    let url = issuer.jwks_url();
    drop(issuer);
    assert!(
        http::get(&url).await.is_err(),
        "issuer still answering after drop"
    );
}
