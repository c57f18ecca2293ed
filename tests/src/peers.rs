//! Handles to the real peers under `tests/peers/`.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::http;
use crate::peer::{PeerProcess, ready_field};
use crate::repo_root;

/// The kinds of token the issuer's control server mints (`POST /mint {"kind": ...}`).
/// See `tests/peers/oidc/README.md` for exactly what each one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// RS256 from the issuer's primary key; `iss`, `aud`, `sub`, `iat`, `nbf` = now-1, `exp`.
    Valid,
    /// Like `Valid`, signed with the ES256 key the JWKS publishes from the start.
    ValidEs256,
    /// `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// HS256, HMAC keyed with the issuer's RSA public key PEM, `kid` of that RSA key.
    Hs256RsaPublicKey,
    /// Valid signature, `aud` = `not-<aud>`.
    WrongAud,
    /// Valid signature, `iss` = `https://attacker.invalid`.
    WrongIss,
    /// Valid signature, `exp` one hour ago.
    Expired,
    /// Valid signature, `nbf` one hour ahead.
    NotYetValid,
    /// RS256 from a key that is not in the JWKS, with its own `kid`.
    UnknownKid,
    /// A valid token whose payload `sub` was changed after signing.
    Tampered,
    /// Valid signature, with a ~16 KiB `padding` claim.
    Oversized,
    /// Adds a new RS256 key to the JWKS now and signs with it (refetch-on-unknown-`kid`).
    Rotated,
    /// Valid, with a `groups` claim (default `["developers", "oncall"]`).
    Groups,
}

impl TokenKind {
    pub const ALL: [Self; 13] = [
        Self::Valid,
        Self::ValidEs256,
        Self::AlgNone,
        Self::Hs256RsaPublicKey,
        Self::WrongAud,
        Self::WrongIss,
        Self::Expired,
        Self::NotYetValid,
        Self::UnknownKid,
        Self::Tampered,
        Self::Oversized,
        Self::Rotated,
        Self::Groups,
    ];

    /// The wire name (`valid`, `alg-none`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::ValidEs256 => "valid-es256",
            Self::AlgNone => "alg-none",
            Self::Hs256RsaPublicKey => "hs256-rsa-public-key",
            Self::WrongAud => "wrong-aud",
            Self::WrongIss => "wrong-iss",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::UnknownKid => "unknown-kid",
            Self::Tampered => "tampered",
            Self::Oversized => "oversized",
            Self::Rotated => "rotated",
            Self::Groups => "groups",
        }
    }

    /// Whether a correct verifier (pinned issuer, right audience, RS256/ES256 allowed, JWKS
    /// refetched on an unknown `kid`) accepts this token.
    pub fn should_verify(self) -> bool {
        matches!(
            self,
            Self::Valid | Self::ValidEs256 | Self::Rotated | Self::Groups | Self::Oversized
        )
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `POST /mint` request with every option: `MintRequest::new(kind).subject("bob").aud("x")`.
#[derive(Debug, Clone)]
pub struct MintRequest {
    body: Map<String, Value>,
}

impl MintRequest {
    pub fn new(kind: TokenKind) -> Self {
        let mut body = Map::new();
        body.insert("kind".into(), kind.as_str().into());
        Self { body }
    }

    /// The `sub` claim (default `alice`).
    pub fn subject(mut self, sub: &str) -> Self {
        self.body.insert("sub".into(), sub.into());
        self
    }

    /// The `aud` claim (default: the issuer's `--default-aud`, `intentgate`).
    pub fn aud(mut self, aud: &str) -> Self {
        self.body.insert("aud".into(), aud.into());
        self
    }

    /// Lifetime in seconds (default 600); ignored by `expired` and `not-yet-valid`.
    pub fn ttl(mut self, seconds: u64) -> Self {
        self.body.insert("ttl".into(), seconds.into());
        self
    }

    /// A `groups` claim (any kind; `groups` has a default).
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|g| Value::String(g.into()))
            .collect();
        self.body.insert("groups".into(), Value::Array(groups));
        self
    }

    /// Any extra claim, set before signing (it overrides the defaults, e.g. `scope`, `email`).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        let claims = self
            .body
            .entry("claims")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(claims) = claims {
            claims.insert(name.into(), value.into());
        }
        self
    }

    fn to_json(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

/// Requests the issuer has served, by path (`/.well-known/openid-configuration`, `/jwks`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerStats {
    pub requests: BTreeMap<String, u64>,
    /// `kid`s added by `rotated` mints, oldest first.
    pub rotated_kids: Vec<String>,
}

impl IssuerStats {
    /// How many times `path` was requested.
    pub fn count(&self, path: &str) -> u64 {
        self.requests.get(path).copied().unwrap_or(0)
    }

    /// JWKS fetches so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.count("/jwks")
    }

    /// Discovery document fetches so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.count("/.well-known/openid-configuration")
    }
}

/// A running OIDC issuer (`tests/peers/oidc/issuer.mjs`): `oauth2-mock-server` with an RS256
/// primary key and an ES256 key in its JWKS, plus a control server that mints tokens.
/// Killed on drop.
pub struct OidcIssuer {
    url: String,
    control: String,
    process: PeerProcess,
}

impl OidcIssuer {
    /// Starts an issuer on a free port.
    pub async fn start() -> Result<Self> {
        Self::start_on(0).await
    }

    /// Starts an issuer on `port` (0 = a free one); the control server always gets a free port.
    pub async fn start_on(port: u16) -> Result<Self> {
        let dir = repo_root().join("tests/peers/oidc");
        if !dir.join("node_modules/oauth2-mock-server").is_dir() {
            bail!(
                "the OIDC issuer's npm packages are not installed in {}: run scripts/ensure-peers",
                dir.display()
            );
        }
        let (process, ready) = PeerProcess::spawn(
            "oidc-issuer",
            &dir.join("issuer.mjs"),
            ["--port".to_owned(), port.to_string()],
        )
        .await?;
        Ok(Self {
            url: ready_field(&ready, "oidc-issuer", "issuer")?,
            control: ready_field(&ready, "oidc-issuer", "control")?,
            process,
        })
    }

    /// The issuer URL (`http://127.0.0.1:PORT`): the `iss` of its tokens, the base of discovery.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The control server's base URL.
    pub fn control_url(&self) -> &str {
        &self.control
    }

    /// The discovery document URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.url)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// The process id (for tests that kill the issuer to simulate an outage).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Mints a token of `kind` for `sub = alice` and audience `aud`.
    pub async fn mint(&self, kind: TokenKind, aud: &str) -> Result<String> {
        self.mint_with(&MintRequest::new(kind).aud(aud)).await
    }

    /// Mints a token of `kind` for `sub` and audience `aud`.
    pub async fn mint_for(&self, kind: TokenKind, sub: &str, aud: &str) -> Result<String> {
        self.mint_with(&MintRequest::new(kind).subject(sub).aud(aud))
            .await
    }

    /// Mints a token with every option.
    pub async fn mint_with(&self, request: &MintRequest) -> Result<String> {
        let url = format!("{}/mint", self.control);
        let response = http::post_json(&url, &request.to_json()).await?;
        if response.status != 200 {
            bail!(
                "mint {} failed: HTTP {}: {}",
                request.to_json(),
                response.status,
                response.text().trim()
            );
        }
        Ok(response.text())
    }

    /// Requests the issuer has served so far.
    pub async fn stats(&self) -> Result<IssuerStats> {
        let response = http::get(&format!("{}/stats", self.control)).await?;
        let value = response.json()?;
        let requests = value
            .get("requests")
            .and_then(Value::as_object)
            .context("stats has no `requests` object")?
            .iter()
            .map(|(path, n)| (path.clone(), n.as_u64().unwrap_or(0)))
            .collect();
        let rotated_kids = value
            .get("rotated_kids")
            .and_then(Value::as_array)
            .map(|kids| {
                kids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(IssuerStats {
            requests,
            rotated_kids,
        })
    }

    /// While `on`, every issuer request (discovery, JWKS, ...) answers 503.
    pub async fn set_outage(&self, on: bool) -> Result<()> {
        let response =
            http::post_json(&format!("{}/outage", self.control), &json!({ "on": on })).await?;
        if response.status != 200 {
            bail!("outage: HTTP {}: {}", response.status, response.text());
        }
        Ok(())
    }
}

impl fmt::Debug for OidcIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcIssuer")
            .field("url", &self.url)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// A running echo upstream (`tests/peers/echo-upstream.mjs`): answers every request with
/// 200 and `{method, path, query, headers, raw_headers, body}` as JSON. Killed on drop.
pub struct EchoUpstream {
    url: String,
    process: PeerProcess,
}

impl EchoUpstream {
    /// Starts an echo upstream on a free port.
    pub async fn start() -> Result<Self> {
        Self::start_on(0).await
    }

    /// Starts an echo upstream on `port` (0 = a free one).
    pub async fn start_on(port: u16) -> Result<Self> {
        let script = repo_root().join("tests/peers/echo-upstream.mjs");
        let (process, ready) = PeerProcess::spawn(
            "echo-upstream",
            &script,
            ["--port".to_owned(), port.to_string()],
        )
        .await?;
        Ok(Self {
            url: ready_field(&ready, "echo-upstream", "url")?,
            process,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`, for config files that want an address.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl fmt::Debug for EchoUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoUpstream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
