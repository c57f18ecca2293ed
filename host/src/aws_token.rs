//! Mints AWS workload tokens: the credential the `aws-iam` identity plugin
//! verifies (`plugins/aws-iam/README.md`, "Token format").
//!
//! Why this shape:
//!
//! * **Nothing long-lived.** The signing credentials come from the AWS
//!   default chain (environment, shared profile, web identity, ECS
//!   container credentials, EC2 instance metadata): on ECS, the task role's
//!   temporary credentials, which the agent rotates. Long-lived IAM user
//!   keys (no session token) are refused: the verifier accepts only role
//!   sessions.
//! * **The token is a signed request, not a secret key.** It is a SigV4
//!   signature over one `sts:GetCallerIdentity` POST. Whoever verifies it
//!   replays it to STS, which answers who signed it; the secret access key
//!   never leaves this process. STS accepts a signature for 15 minutes, so
//!   a token is worth at most that, to anyone.
//! * **Bound to an audience.** The audience header (default
//!   `x-intentgate-audience`) carries the verifying deployment's name and is
//!   in `SignedHeaders`, so a token minted for one gateway is refused by
//!   another (STS ignores unsigned headers; an unsigned audience would be
//!   forgeable, GHSA-wq26-3j2m-4hvv).
//! * **Minimal request.** Exactly `content-type`, `host`, `x-amz-date`,
//!   `x-amz-security-token` and the audience header are signed; no
//!   `x-amz-user-agent` or `amz-sdk-*` extras, which the verifier refuses.
//!   The parameters are the form body, as AWS SDKs send them (the plugin's
//!   "Vault form"): STS accepts them in the query too, but moto, the STS
//!   double the tests use, verifies signatures only for this form.
//!
//! [`AwsTokenMinter::current`] caches the token: it is re-minted when older
//! than [`REMINT_AFTER`] or when its signing credentials expire within
//! [`EXPIRY_MARGIN`], so a token never outlives the credentials that signed
//! it. Neither credentials nor whole tokens are ever logged.
//!
//! This file uses only external crates (no `crate::` paths), so tests can
//! compile it on its own with `#[path]`.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

/// The default audience header, as in the plugin.
pub const DEFAULT_AUDIENCE_HEADER: &str = "x-intentgate-audience";
/// The signing region when neither the config nor the AWS chain names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// A cached token is re-minted once it is this old. The verifier accepts a
/// signature for 15 minutes; five leaves room for clock skew and transit.
pub const REMINT_AFTER: Duration = Duration::from_secs(300);
/// A cached token is re-minted when its signing credentials expire within
/// this margin.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// A token is not re-minted more often than this, even when the credentials
/// the chain hands out keep expiring within [`EXPIRY_MARGIN`] (the same
/// near-expiry credentials would only be fetched and used again).
pub const MIN_REMINT_INTERVAL: Duration = Duration::from_secs(5);
/// When re-minting fails, the cached token still stands in while it is
/// younger than this and its credentials have not expired.
pub const SERVE_CACHED_FOR: Duration = Duration::from_secs(600);
/// After a failed mint, [`AwsTokenMinter::current`] does not try again for
/// this long (it answers the cached token or the same error).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Credentials are fetched again for every mint unless they have an expiry
/// further away than this (STS's 15-minute signature window): a token signed
/// with them can then never outlive them, wherever it is presented.
pub const CREDENTIALS_REUSE_MARGIN: Duration = Duration::from_secs(900);

/// The request parameters: the form body.
const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// The body's type (signed).
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// The global STS endpoint, signed for `us-east-1`.
const GLOBAL_STS_HOST: &str = "sts.amazonaws.com";
/// The longest audience the plugin accepts.
const MAX_AUDIENCE_BYTES: usize = 256;
/// Header names the audience header may not take (the plugin's fixed and
/// reserved headers).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "authorization",
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "date",
];

/// What to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTokenConfig {
    /// The verifying deployment's `audience` (the plugin's config): printable
    /// ASCII, at most 256 bytes, no surrounding spaces. Not a secret.
    pub audience: String,
    /// The audience header's name (lowercased); default
    /// [`DEFAULT_AUDIENCE_HEADER`].
    pub audience_header: String,
    /// The signing region; default: the AWS chain's (`AWS_REGION`, profile,
    /// instance metadata), else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// The STS host named in the token; default `sts.<region>.amazonaws.com`
    /// (`.amazonaws.com.cn` for `cn-*` regions). `sts.amazonaws.com` (the
    /// global endpoint) is always signed for `us-east-1`. It must be in the
    /// verifier's `sts_hosts`.
    pub sts_host: Option<String>,
}

impl AwsTokenConfig {
    /// A config for `audience` with every default.
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            audience_header: DEFAULT_AUDIENCE_HEADER.to_string(),
            region: None,
            sts_host: None,
        }
    }
}

/// One minted token.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// The token: one line of JSON, `{"url","method","headers","body"}`
    /// (a bearer credential until 15 minutes after `signed_at`: never log
    /// it).
    pub json: String,
    /// The signing time (`X-Amz-Date`, which has whole seconds).
    pub signed_at: SystemTime,
    /// When the signing credentials expire, if they say.
    pub credentials_expire: Option<SystemTime>,
}

impl fmt::Debug for MintedToken {
    /// Never prints the token: it is a bearer credential for 15 minutes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field(
                "json",
                &format_args!("<{} bytes, redacted>", self.json.len()),
            )
            .field("signed_at", &self.signed_at)
            .field("credentials_expire", &self.credentials_expire)
            .finish()
    }
}

/// The clock; tests inject their own.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The cached token.
struct Cached {
    token: Arc<Vec<u8>>,
    signed_at: SystemTime,
    credentials_expire: Option<SystemTime>,
}

impl Cached {
    /// Whether this token can be handed out without re-minting.
    fn fresh(&self, now: SystemTime) -> bool {
        let Ok(age) = now.duration_since(self.signed_at) else {
            // Signed "in the future": the clock went back. Mint again.
            return false;
        };
        if age >= REMINT_AFTER {
            return false;
        }
        match self.credentials_expire {
            None => true,
            Some(expire) if now + EXPIRY_MARGIN < expire => true,
            // Near expiry: re-mint, but not in a tight loop while the chain
            // keeps answering the same near-expiry credentials.
            Some(expire) => age < MIN_REMINT_INTERVAL && now < expire,
        }
    }

    /// Whether this token may stand in when re-minting fails.
    fn usable(&self, now: SystemTime) -> bool {
        now.duration_since(self.signed_at)
            .is_ok_and(|age| age < SERVE_CACHED_FOR)
            && self.credentials_expire.is_none_or(|expire| now < expire)
    }
}

/// Mints and caches AWS workload tokens.
pub struct AwsTokenMinter {
    credentials: SharedCredentialsProvider,
    audience: String,
    audience_header: String,
    region: String,
    sts_host: String,
    clock: Clock,
    /// Credentials kept between mints (see [`CREDENTIALS_REUSE_MARGIN`]).
    kept_credentials: tokio::sync::Mutex<Option<Credentials>>,
    /// The latest token, read without locking.
    latest: ArcSwapOption<Cached>,
    /// Held while re-minting in [`Self::current`] (one mint at a time); holds
    /// the last failure.
    refresh: tokio::sync::Mutex<Option<(SystemTime, String)>>,
}

impl fmt::Debug for AwsTokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsTokenMinter")
            .field("audience", &self.audience)
            .field("audience_header", &self.audience_header)
            .field("region", &self.region)
            .field("sts_host", &self.sts_host)
            .finish_non_exhaustive()
    }
}

impl AwsTokenMinter {
    /// A minter signing with the AWS default credentials chain: environment
    /// variables, the shared profile, web identity, ECS container
    /// credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` /
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`), EC2 instance metadata. Mints
    /// once, so missing or unusable credentials are reported here.
    ///
    /// # Errors
    /// An invalid config, or no usable credentials (the message names the
    /// chain and what each source said).
    pub async fn from_environment(config: AwsTokenConfig) -> Result<Self, String> {
        check_config(&config)?;
        let (credentials, region) = default_chain(config.region.clone()).await?;
        let minter = Self::new(AwsTokenConfig { region, ..config }, credentials)?;
        minter.mint().await?;
        Ok(minter)
    }

    /// A minter signing with `credentials` (any provider; tests, or a
    /// caller with its own chain). Mints nothing yet.
    ///
    /// # Errors
    /// An invalid config.
    pub fn new(
        config: AwsTokenConfig,
        credentials: SharedCredentialsProvider,
    ) -> Result<Self, String> {
        Self::with_clock(config, credentials, Arc::new(SystemTime::now))
    }

    fn with_clock(
        config: AwsTokenConfig,
        credentials: SharedCredentialsProvider,
        clock: Clock,
    ) -> Result<Self, String> {
        let (region, sts_host) = check_config(&config)?;
        Ok(Self {
            credentials,
            audience: config.audience,
            audience_header: config.audience_header.to_ascii_lowercase(),
            region,
            sts_host,
            clock,
            kept_credentials: tokio::sync::Mutex::new(None),
            latest: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The region tokens are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The STS host tokens name.
    pub fn sts_host(&self) -> &str {
        &self.sts_host
    }

    /// The audience tokens carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs a fresh `GetCallerIdentity` request and returns it as the
    /// one-line JSON token (also cached for [`Self::current`]).
    ///
    /// # Errors
    /// No usable credentials, or (never expected) a signing failure.
    pub async fn mint(&self) -> Result<MintedToken, String> {
        let (json, cached) = self.mint_and_store().await?;
        Ok(MintedToken {
            json,
            signed_at: cached.signed_at,
            credentials_expire: cached.credentials_expire,
        })
    }

    async fn mint_and_store(&self) -> Result<(String, Arc<Cached>), String> {
        let credentials = self.credentials().await?;
        let now = (self.clock)();
        let credentials_expire = credentials.expiry();
        if credentials_expire.is_some_and(|expire| expire <= now) {
            return Err(
                "the AWS credentials the chain returned have already expired; \
                 cannot sign a token with them"
                    .to_string(),
            );
        }
        if credentials.session_token().is_none_or(str::is_empty) {
            return Err(
                "the AWS credentials have no session token: they are long-lived IAM user \
                 keys, and intentgate's aws-iam verifier accepts only role sessions. Run \
                 with a role's temporary credentials (ECS task role, EC2 instance role, \
                 web identity, SSO, or `aws sts assume-role`)"
                    .to_string(),
            );
        }
        let json = sign_token(
            &credentials,
            &self.audience_header,
            &self.audience,
            &self.region,
            &self.sts_host,
            now,
        )?;
        let cached = Arc::new(Cached {
            token: Arc::new(json.clone().into_bytes()),
            // X-Amz-Date has whole seconds; keep the time the verifier sees.
            signed_at: whole_seconds(now),
            credentials_expire,
        });
        self.latest.store(Some(cached.clone()));
        tracing::debug!(
            sts_host = %self.sts_host,
            region = %self.region,
            credentials_expire_in_s = credentials_expire
                .and_then(|e| e.duration_since(now).ok())
                .map(|d| d.as_secs()),
            "minted an AWS workload token"
        );
        Ok((json, cached))
    }

    /// The cached token, re-minted when older than [`REMINT_AFTER`] or when
    /// its credentials expire within [`EXPIRY_MARGIN`]. When re-minting
    /// fails, a cached token younger than [`SERVE_CACHED_FOR`] whose
    /// credentials are still valid is answered instead (with a warning).
    ///
    /// # Errors
    /// No token can be minted and none is cached that is still usable.
    pub async fn current(&self) -> Result<Arc<Vec<u8>>, String> {
        if let Some(cached) = self.latest.load_full()
            && cached.fresh((self.clock)())
        {
            return Ok(cached.token.clone());
        }
        let mut last_failure = self.refresh.lock().await;
        let now = (self.clock)();
        let cached = self.latest.load_full();
        if let Some(cached) = &cached
            && cached.fresh(now)
        {
            // Minted by whoever held the lock before us.
            return Ok(cached.token.clone());
        }
        if let Some((failed_at, error)) = last_failure.as_ref()
            && now
                .duration_since(*failed_at)
                .is_ok_and(|d| d < RETRY_AFTER_FAILURE)
        {
            return match cached {
                Some(cached) if cached.usable(now) => Ok(cached.token.clone()),
                _ => Err(error.clone()),
            };
        }
        match self.mint_and_store().await {
            Ok((_, minted)) => {
                *last_failure = None;
                Ok(minted.token.clone())
            }
            Err(error) => {
                *last_failure = Some((now, error.clone()));
                match cached {
                    Some(cached) if cached.usable(now) => {
                        tracing::warn!(
                            error = %error,
                            signed_s_ago = now
                                .duration_since(cached.signed_at)
                                .map(|d| d.as_secs())
                                .unwrap_or_default(),
                            "cannot re-mint the AWS workload token; answering the cached one"
                        );
                        Ok(cached.token.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// The cached token without minting (for synchronous callers; keep it
    /// fresh by calling [`Self::current`] periodically, e.g. every 30 s):
    /// `None` unless a token younger than [`SERVE_CACHED_FOR`] whose
    /// credentials are still valid is cached.
    pub fn cached(&self) -> Option<Arc<Vec<u8>>> {
        let cached = self.latest.load_full()?;
        cached.usable((self.clock)()).then(|| cached.token.clone())
    }

    /// Credentials to sign with: the kept ones while they expire later than
    /// [`CREDENTIALS_REUSE_MARGIN`] from now, else fresh from the provider.
    async fn credentials(&self) -> Result<Credentials, String> {
        let mut kept = self.kept_credentials.lock().await;
        let now = (self.clock)();
        if let Some(credentials) = kept.as_ref()
            && credentials
                .expiry()
                .is_some_and(|expire| expire > now + CREDENTIALS_REUSE_MARGIN)
        {
            return Ok(credentials.clone());
        }
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| credentials_error(&e))?;
        *kept = Some(credentials.clone());
        Ok(credentials)
    }
}

/// The AWS default credentials chain (environment, shared profile, web
/// identity, ECS container credentials, EC2 instance metadata; HTTP on
/// rustls + ring) and the region: `region` if given, else the chain's.
/// Loads configuration only: no credentials are fetched yet.
///
/// # Errors
/// When the SDK config has no credentials provider.
pub async fn default_chain(
    region: Option<String>,
) -> Result<(SharedCredentialsProvider, Option<String>), String> {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
    if let Some(region) = &region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    let region = region.or_else(|| sdk.region().map(ToString::to_string));
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| "the AWS SDK config has no credentials provider".to_string())?;
    Ok((credentials, region))
}

/// Checks an STS region and host by the minter's rules; returns the signing
/// region and the STS host (defaults as in [`AwsTokenConfig`]).
///
/// # Errors
/// A malformed region or host.
pub fn sts_region_and_host(
    region: Option<&str>,
    sts_host: Option<&str>,
) -> Result<(String, String), String> {
    check_config(&AwsTokenConfig {
        region: region.map(str::to_string),
        sts_host: sts_host.map(str::to_string),
        ..AwsTokenConfig::new("sts")
    })
}

/// The signed header binding a Google subject token to its workload
/// identity pool provider.
pub const GCP_TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";

/// A subject token for Google workload identity federation from AWS, as
/// Google's libraries build it (AIP-4117; `google-cloud-auth`'s AWS source):
/// a SigV4 signature over `POST https://<sts_host>/?Action=GetCallerIdentity&Version=2011-06-15`
/// with an empty body, signing `host`, `x-amz-date`, `x-amz-security-token`
/// (when the credentials have a session token) and
/// `x-goog-cloud-target-resource: <target_resource>` (the provider's full
/// name, the exchange's `audience`); serialised as
/// `{"url","method","headers","body"}` JSON and URL-encoded
/// (`application/x-www-form-urlencoded` rules).
///
/// A bearer credential until STS stops accepting the signature (15 minutes):
/// never log it.
///
/// # Errors
/// (Never expected) a signing failure.
pub fn sign_gcp_subject_token(
    credentials: &Credentials,
    target_resource: &str,
    region: &str,
    sts_host: &str,
    time: SystemTime,
) -> Result<String, String> {
    let url = format!("https://{sts_host}/?{BODY}");
    let signed = sign_sigv4(
        credentials,
        &url,
        &[
            ("host", sts_host),
            (GCP_TARGET_RESOURCE_HEADER, target_resource),
        ],
        b"",
        region,
        time,
    )?;
    let (date, authorization) = (signed.date.as_str(), signed.authorization.as_str());
    let session_token = signed.session_token.as_deref();
    let mut headers = vec![
        TokenHeader {
            key: "host",
            value: sts_host,
        },
        TokenHeader {
            key: "x-amz-date",
            value: date,
        },
    ];
    if let Some(session_token) = session_token {
        headers.push(TokenHeader {
            key: "x-amz-security-token",
            value: session_token,
        });
    }
    headers.push(TokenHeader {
        key: GCP_TARGET_RESOURCE_HEADER,
        value: target_resource,
    });
    headers.push(TokenHeader {
        key: "Authorization",
        value: authorization,
    });
    let token = TokenJson {
        url: &url,
        method: "POST",
        headers,
        body: "",
    };
    let json =
        serde_json::to_string(&token).map_err(|e| format!("cannot serialize the token: {e}"))?;
    Ok(form_urlencode(&json))
}

/// `text` URL-encoded by `application/x-www-form-urlencoded` rules
/// (alphanumerics and `*-._` kept, space as `+`, the rest `%XX`).
fn form_urlencode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

/// Checks `config` against the plugin's rules; returns the signing region
/// and the STS host.
fn check_config(config: &AwsTokenConfig) -> Result<(String, String), String> {
    let audience = &config.audience;
    if audience.is_empty() {
        return Err("the AWS token audience must not be empty".to_string());
    }
    if audience.len() > MAX_AUDIENCE_BYTES {
        return Err(format!(
            "the AWS token audience is {} bytes, over the {MAX_AUDIENCE_BYTES}-byte limit",
            audience.len()
        ));
    }
    if !audience.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(
            "the AWS token audience must be printable ASCII (it travels in an HTTP header)"
                .to_string(),
        );
    }
    if audience.starts_with(' ') || audience.ends_with(' ') {
        return Err("the AWS token audience must not start or end with a space".to_string());
    }
    let header = config.audience_header.to_ascii_lowercase();
    let header_ok = (1..=64).contains(&header.len())
        && header.starts_with(|c: char| c.is_ascii_lowercase())
        && header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !header_ok {
        return Err(format!(
            "the audience header `{}` must be a header name of letters, digits and `-` (at most 64)",
            config.audience_header
        ));
    }
    if header.starts_with("x-amz-") || RESERVED_HEADERS.contains(&header.as_str()) {
        return Err(format!(
            "the audience header `{header}` is a header with its own meaning; pick another name"
        ));
    }
    let region = config.region.as_deref().unwrap_or(DEFAULT_REGION);
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("`{region}` is not an AWS region name"));
    }
    let sts_host = match &config.sts_host {
        Some(host) => host.to_ascii_lowercase(),
        None if region.starts_with("cn-") => format!("sts.{region}.amazonaws.com.cn"),
        None => format!("sts.{region}.amazonaws.com"),
    };
    let labels_ok = sts_host.split('.').count() >= 2
        && sts_host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !labels_ok || sts_host.len() > 253 {
        return Err(format!(
            "the STS host `{sts_host}` must be a DNS name (no scheme, port or path)"
        ));
    }
    let region = if sts_host == GLOBAL_STS_HOST {
        DEFAULT_REGION
    } else {
        region
    };
    Ok((region.to_string(), sts_host))
}

/// The header entry of the JSON token.
#[derive(serde::Serialize)]
struct TokenHeader<'a> {
    key: &'a str,
    value: &'a str,
}

/// The JSON token.
#[derive(serde::Serialize)]
struct TokenJson<'a> {
    url: &'a str,
    method: &'a str,
    headers: Vec<TokenHeader<'a>>,
    body: &'a str,
}

/// The headers SigV4 adds to a GetCallerIdentity request.
struct Signed {
    date: String,
    authorization: String,
    session_token: Option<String>,
}

/// Signs `POST url` with exactly `headers` and `body` for STS in `region`;
/// refuses any header the signer adds beyond date, authorization and
/// session token (the verifiers refuse them too).
fn sign_sigv4(
    credentials: &Credentials,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    region: &str,
    time: SystemTime,
) -> Result<Signed, String> {
    let identity = credentials.clone().into();
    let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot set up SigV4 signing: {e}"))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign the GetCallerIdentity request: {e}"))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| format!("cannot sign the GetCallerIdentity request: {e}"))?
        .into_parts();
    let (added, _query) = instructions.into_parts();
    let (mut date, mut authorization, mut session_token) = (None, None, None);
    for header in &added {
        match header.name() {
            "x-amz-date" => date = Some(header.value().to_string()),
            "authorization" => authorization = Some(header.value().to_string()),
            "x-amz-security-token" => session_token = Some(header.value().to_string()),
            other => {
                return Err(format!(
                    "the SigV4 signer added the header `{other}`, which the verifier refuses"
                ));
            }
        }
    }
    let (Some(date), Some(authorization)) = (date, authorization) else {
        return Err("the SigV4 signer did not add X-Amz-Date and Authorization".to_string());
    };
    Ok(Signed {
        date,
        authorization,
        session_token,
    })
}

/// Signs `POST https://<sts_host>/` with the body
/// `Action=GetCallerIdentity&Version=2011-06-15` and the audience header;
/// returns the token JSON.
fn sign_token(
    credentials: &Credentials,
    audience_header: &str,
    audience: &str,
    region: &str,
    sts_host: &str,
    time: SystemTime,
) -> Result<String, String> {
    let url = format!("https://{sts_host}/");
    let signed = sign_sigv4(
        credentials,
        &url,
        &[
            ("content-type", CONTENT_TYPE),
            ("host", sts_host),
            (audience_header, audience),
        ],
        BODY.as_bytes(),
        region,
        time,
    )?;
    let Some(session_token) = signed.session_token.as_deref() else {
        return Err(
            "the SigV4 signer did not add X-Amz-Date, Authorization and X-Amz-Security-Token"
                .to_string(),
        );
    };
    let (date, authorization) = (signed.date.as_str(), signed.authorization.as_str());
    let token = TokenJson {
        url: &url,
        method: "POST",
        headers: vec![
            TokenHeader {
                key: "host",
                value: sts_host,
            },
            TokenHeader {
                key: "content-type",
                value: CONTENT_TYPE,
            },
            TokenHeader {
                key: "x-amz-date",
                value: date,
            },
            TokenHeader {
                key: "x-amz-security-token",
                value: session_token,
            },
            TokenHeader {
                key: audience_header,
                value: audience,
            },
            TokenHeader {
                key: "Authorization",
                value: authorization,
            },
        ],
        body: BODY,
    };
    serde_json::to_string(&token).map_err(|e| format!("cannot serialize the token: {e}"))
}

/// `time` without its fraction of a second.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => time,
    }
}

/// A credentials error as one line, with its causes, naming the chain when
/// nothing provided credentials.
pub fn credentials_error(error: &CredentialsError) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        causes.push(e.to_string());
        source = e.source();
    }
    let details = causes
        .join(": ")
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace(":; ", ": ");
    let details = if details.is_empty() {
        error.to_string()
    } else {
        details
    };
    match error {
        CredentialsError::CredentialsNotLoaded(_) => format!(
            "no AWS credentials found. Looked, in order, at: environment variables \
             (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared \
             profile (AWS_PROFILE, ~/.aws/config, ~/.aws/credentials), web identity \
             (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN), ECS container credentials \
             (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI) \
             and EC2 instance metadata (IMDS). Details: {details}"
        ),
        _ => format!("cannot load AWS credentials: {error}: {details}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future;
    use sha2::{Digest, Sha256};

    /// 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600;
    const KEY_ID: &str = "ASIAEXAMPLEEXAMPLE12";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION: &str = "IQoJb3JpZ2luX2VjEXAMPLE+session/token==";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn creds(n: usize, expire: Option<SystemTime>) -> Credentials {
        Credentials::new(
            format!("{KEY_ID}{n:02}"),
            SECRET,
            Some(format!("{SESSION}{n}")),
            expire,
            "test",
        )
    }

    /// Answers `answers[i]` for the i-th call (the last one from then on),
    /// counting calls.
    #[derive(Debug)]
    struct Scripted {
        answers: Vec<Result<Credentials, String>>,
        calls: Arc<AtomicUsize>,
    }

    impl ProvideCredentials for Scripted {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let i = self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answers[i.min(self.answers.len() - 1)].clone();
            future::ProvideCredentials::ready(answer.map_err(CredentialsError::provider_error))
        }
    }

    struct Fixture {
        minter: AwsTokenMinter,
        now: Arc<Mutex<SystemTime>>,
        calls: Arc<AtomicUsize>,
    }

    impl Fixture {
        fn set(&self, secs: u64) {
            *self.now.lock().unwrap() = at(secs);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn fixture(config: AwsTokenConfig, answers: Vec<Result<Credentials, String>>) -> Fixture {
        let now = Arc::new(Mutex::new(at(T0)));
        let calls = Arc::new(AtomicUsize::new(0));
        let clock_now = now.clone();
        let minter = AwsTokenMinter::with_clock(
            config,
            SharedCredentialsProvider::new(Scripted {
                answers,
                calls: calls.clone(),
            }),
            Arc::new(move || *clock_now.lock().unwrap()),
        )
        .unwrap();
        Fixture { minter, now, calls }
    }

    fn config() -> AwsTokenConfig {
        AwsTokenConfig {
            region: Some("us-east-1".into()),
            ..AwsTokenConfig::new("intentgate-prod")
        }
    }

    fn headers_of(token: &serde_json::Value) -> Vec<(String, String)> {
        token["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap().to_string(),
                    h["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(k.map(|b| b ^ 0x36));
        inner.update(data);
        let mut outer = Sha256::new();
        outer.update(k.map(|b| b ^ 0x5c));
        outer.update(inner.finalize());
        outer.finalize().to_vec()
    }

    /// Recomputes the SigV4 signature the way STS does, from the token's
    /// url, headers and body alone, for the headers named in SignedHeaders.
    fn expected_signature(token: &serde_json::Value, secret: &str) -> String {
        let headers = headers_of(token);
        let authorization = header(&headers, "authorization");
        let credential = authorization
            .split("Credential=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let scope = credential.split_once('/').unwrap().1;
        let [day, region, service, _] = scope.split('/').collect::<Vec<_>>()[..] else {
            panic!("scope {scope}")
        };
        let signed = authorization
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let canonical_headers: String = signed
            .split(';')
            .map(|name| format!("{name}:{}\n", header(&headers, name).trim()))
            .collect();
        let url = token["url"].as_str().unwrap();
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        params.sort_unstable();
        let body = token["body"].as_str().unwrap();
        let creq = format!(
            "{}\n/\n{}\n{canonical_headers}\n{signed}\n{}",
            token["method"].as_str().unwrap(),
            params.join("&"),
            hex::encode(Sha256::digest(body.as_bytes()))
        );
        let date = header(&headers, "x-amz-date");
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(Sha256::digest(creq.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        hex::encode(hmac(&key, string_to_sign.as_bytes()))
    }

    /// The plugin's documented rules (`plugins/aws-iam/README.md`, "Token
    /// format" and "What is checked" steps 1–4), re-stated independently.
    fn check_like_plugin(
        token: &[u8],
        audience_header: &str,
        audience: &str,
        sts_hosts: &[&str],
        now_unix: u64,
    ) -> Result<(), String> {
        if token.len() > 8192 {
            return Err("over 8192 bytes".into());
        }
        if token.contains(&b'\n') {
            return Err("not one line".into());
        }
        let value: serde_json::Value = serde_json::from_slice(token).map_err(|e| e.to_string())?;
        let object = value.as_object().ok_or("not an object")?;
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        if keys != ["body", "headers", "method", "url"] {
            return Err(format!("members {keys:?}"));
        }
        if value["method"] != "POST" {
            return Err("method".into());
        }
        let url = value["url"].as_str().ok_or("url")?;
        let rest = url.strip_prefix("https://").ok_or("not https")?;
        let (host, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if host.contains([':', '@']) || !sts_hosts.contains(&host) || url.contains('#') {
            return Err(format!("host {host}"));
        }
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        if !(path.is_empty() || path == "/") {
            return Err("path".into());
        }
        let body = value["body"].as_str().ok_or("body")?;
        let params = if query.is_empty() { body } else { query };
        if !query.is_empty() && !body.is_empty() {
            return Err("parameters twice".into());
        }
        let mut params: Vec<&str> = params.split('&').collect();
        params.sort_unstable();
        if params != ["Action=GetCallerIdentity", "Version=2011-06-15"] {
            return Err(format!("params {params:?}"));
        }
        let mut seen = std::collections::BTreeMap::new();
        for entry in value["headers"].as_array().ok_or("headers")? {
            let entry = entry.as_object().ok_or("header entry")?;
            if entry.len() != 2 {
                return Err("header entry members".into());
            }
            let key = entry["key"].as_str().ok_or("key")?.to_ascii_lowercase();
            let value = entry["value"].as_str().ok_or("value")?;
            let allowed = [
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-amz-content-sha256",
                "authorization",
                "content-type",
                "content-length",
                "accept",
                "user-agent",
            ];
            if !allowed.contains(&key.as_str()) && key != audience_header {
                return Err(format!("header {key} not allowed"));
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(format!("header {key} not printable"));
            }
            if seen.insert(key.clone(), value.to_string()).is_some() {
                return Err(format!("header {key} twice"));
            }
        }
        for required in ["host", "x-amz-date", "authorization", audience_header] {
            if !seen.contains_key(required) {
                return Err(format!("no {required}"));
            }
        }
        if seen["host"] != host || seen[audience_header] != audience {
            return Err("host or audience value".into());
        }
        if let Some(content_type) = seen.get("content-type")
            && !matches!(
                content_type.to_ascii_lowercase().as_str(),
                "application/x-www-form-urlencoded"
                    | "application/x-www-form-urlencoded; charset=utf-8"
            )
        {
            return Err("content-type".into());
        }
        if seen
            .get("content-length")
            .is_some_and(|l| *l != body.len().to_string())
        {
            return Err("content-length".into());
        }
        let authorization = &seen["authorization"];
        let rest = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or("algorithm")?;
        let [credential, signed, signature] = rest.split(", ").collect::<Vec<_>>()[..] else {
            return Err("authorization parts".into());
        };
        let credential = credential
            .strip_prefix("Credential=")
            .ok_or("Credential=")?;
        let [key_id, day, region, service, terminator] =
            credential.split('/').collect::<Vec<_>>()[..]
        else {
            return Err("scope".into());
        };
        if !(16..=128).contains(&key_id.len())
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err("key id".into());
        }
        if service != "sts" || terminator != "aws4_request" || region.is_empty() {
            return Err("scope parts".into());
        }
        let signed: Vec<&str> = signed
            .strip_prefix("SignedHeaders=")
            .ok_or("SignedHeaders=")?
            .split(';')
            .collect();
        if !signed.windows(2).all(|w| w[0] < w[1]) {
            return Err("SignedHeaders not sorted".into());
        }
        if signed.iter().any(|n| !seen.contains_key(*n)) {
            return Err("signed header absent".into());
        }
        for required in ["host", "x-amz-date", audience_header] {
            if !signed.contains(&required) {
                return Err(format!("{required} not signed"));
            }
        }
        let signature = signature.strip_prefix("Signature=").ok_or("Signature=")?;
        if signature.len() != 64
            || !signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("signature shape".into());
        }
        let date = &seen["x-amz-date"];
        if date.len() != 16 || &date[..8] != day {
            return Err("scope date".into());
        }
        let days = |y: i64, m: i64, d: i64| {
            // days_from_civil
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
            era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
        };
        let n = |r: std::ops::Range<usize>| date[r].parse::<i64>().unwrap();
        let unix =
            days(n(0..4), n(4..6), n(6..8)) * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
        if (unix - now_unix as i64).abs() > 900 {
            return Err("stale".into());
        }
        Ok(())
    }

    #[tokio::test]
    async fn the_token_has_the_plugins_shape_and_a_valid_signature() {
        let f = fixture(config(), vec![Ok(creds(1, Some(at(T0 + 3600))))]);
        let minted = f.minter.mint().await.unwrap();
        assert_eq!(minted.signed_at, at(T0));
        assert_eq!(minted.credentials_expire, Some(at(T0 + 3600)));
        assert!(!minted.json.contains('\n'));
        let token: serde_json::Value = serde_json::from_str(&minted.json).unwrap();
        let mut members: Vec<&String> = token.as_object().unwrap().keys().collect();
        members.sort();
        assert_eq!(members, ["body", "headers", "method", "url"]);
        assert_eq!(token["url"], "https://sts.us-east-1.amazonaws.com/");
        assert_eq!(token["method"], "POST");
        assert_eq!(token["body"], "Action=GetCallerIdentity&Version=2011-06-15");
        for entry in token["headers"].as_array().unwrap() {
            let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["key", "value"]);
        }
        let headers = headers_of(&token);
        let names: Vec<String> = headers.iter().map(|(k, _)| k.to_lowercase()).collect();
        assert_eq!(
            names,
            [
                "host",
                "content-type",
                "x-amz-date",
                "x-amz-security-token",
                "x-intentgate-audience",
                "authorization"
            ]
        );
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("amz-sdk-") || n == "x-amz-user-agent")
        );
        assert_eq!(header(&headers, "host"), "sts.us-east-1.amazonaws.com");
        assert_eq!(
            header(&headers, "content-type"),
            "application/x-www-form-urlencoded; charset=utf-8"
        );
        assert_eq!(header(&headers, "x-amz-date"), "20260101T000000Z");
        assert_eq!(
            header(&headers, "x-amz-security-token"),
            format!("{SESSION}1")
        );
        assert_eq!(header(&headers, "x-intentgate-audience"), "intentgate-prod");
        let authorization = header(&headers, "authorization");
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential={KEY_ID}01/20260101/us-east-1/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-intentgate-audience, \
             Signature="
        );
        let signature = authorization.strip_prefix(&prefix).unwrap();
        assert_eq!(signature.len(), 64);
        assert!(
            signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(!minted.json.contains(SECRET));
        // STS's view: the signature covers exactly what the token says.
        assert_eq!(signature, expected_signature(&token, SECRET));
        check_like_plugin(
            minted.json.as_bytes(),
            "x-intentgate-audience",
            "intentgate-prod",
            &["sts.us-east-1.amazonaws.com"],
            T0 + 60,
        )
        .unwrap();
        // A tampered audience no longer matches the signature.
        let tampered: serde_json::Value = serde_json::from_str(
            &minted
                .json
                .replace("\"intentgate-prod\"", "\"intentgate-stage\""),
        )
        .unwrap();
        assert_ne!(signature, expected_signature(&tampered, SECRET));
        assert!(!format!("{minted:?}").contains(SESSION));
    }

    #[tokio::test]
    async fn hosts_regions_and_audience_headers() {
        let custom = AwsTokenConfig {
            audience: "gw.example.com".into(),
            audience_header: "X-Gateway-Audience".into(),
            region: Some("eu-west-1".into()),
            sts_host: None,
        };
        let f = fixture(custom, vec![Ok(creds(1, None))]);
        let minted = f.minter.mint().await.unwrap();
        let token: serde_json::Value = serde_json::from_str(&minted.json).unwrap();
        let headers = headers_of(&token);
        assert_eq!(header(&headers, "host"), "sts.eu-west-1.amazonaws.com");
        assert!(
            header(&headers, "authorization").contains(
                "/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-gateway-audience,"
            )
        );
        check_like_plugin(
            minted.json.as_bytes(),
            "x-gateway-audience",
            "gw.example.com",
            &["sts.eu-west-1.amazonaws.com"],
            T0,
        )
        .unwrap();
        assert!(
            check_like_plugin(
                minted.json.as_bytes(),
                "x-intentgate-audience",
                "gw.example.com",
                &["sts.eu-west-1.amazonaws.com"],
                T0,
            )
            .is_err()
        );

        let global = AwsTokenConfig {
            region: Some("eu-west-1".into()),
            sts_host: Some("sts.amazonaws.com".into()),
            ..AwsTokenConfig::new("a")
        };
        assert_eq!(
            check_config(&global),
            Ok(("us-east-1".into(), "sts.amazonaws.com".into()))
        );
        let china = AwsTokenConfig {
            region: Some("cn-north-1".into()),
            ..AwsTokenConfig::new("a")
        };
        assert_eq!(
            check_config(&china).map(|c| c.1),
            Ok("sts.cn-north-1.amazonaws.com.cn".into())
        );
        assert_eq!(
            check_config(&AwsTokenConfig::new("a")),
            Ok(("us-east-1".into(), "sts.us-east-1.amazonaws.com".into()))
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let with = |f: fn(&mut AwsTokenConfig)| {
            let mut c = AwsTokenConfig::new("gw");
            f(&mut c);
            check_config(&c)
        };
        assert!(with(|c| c.audience = String::new()).is_err());
        assert!(with(|c| c.audience = " gw".into()).is_err());
        assert!(with(|c| c.audience = "gw\n".into()).is_err());
        assert!(with(|c| c.audience = "é".into()).is_err());
        assert!(with(|c| c.audience = "a".repeat(257)).is_err());
        assert!(with(|c| c.audience = "a".repeat(256)).is_ok());
        assert!(with(|c| c.audience_header = "x-amz-audience".into()).is_err());
        assert!(with(|c| c.audience_header = "Host".into()).is_err());
        assert!(with(|c| c.audience_header = "connection".into()).is_err());
        assert!(with(|c| c.audience_header = "x audience".into()).is_err());
        assert!(with(|c| c.audience_header = String::new()).is_err());
        assert!(with(|c| c.region = Some("US-EAST-1".into())).is_err());
        assert!(with(|c| c.sts_host = Some("sts.amazonaws.com:443".into())).is_err());
        assert!(with(|c| c.sts_host = Some("https://sts.amazonaws.com".into())).is_err());
        assert!(with(|c| c.sts_host = Some("localhost".into())).is_err());
        assert!(with(|c| c.sts_host = Some("STS.eu-west-1.amazonaws.com".into())).is_ok());
    }

    #[tokio::test]
    async fn long_lived_and_expired_credentials_are_refused() {
        let f = fixture(
            config(),
            vec![Ok(Credentials::new(
                "AKIAEXAMPLEEXAMPLE12",
                SECRET,
                None,
                None,
                "t",
            ))],
        );
        let e = f.minter.mint().await.unwrap_err();
        assert!(e.contains("no session token"), "{e}");
        assert!(f.minter.current().await.is_err());

        let f = fixture(config(), vec![Ok(creds(1, Some(at(T0))))]);
        let e = f.minter.mint().await.unwrap_err();
        assert!(e.contains("already expired"), "{e}");
        assert!(!e.contains(SECRET) && !e.contains(SESSION));
    }

    #[tokio::test]
    async fn current_re_mints_after_five_minutes() {
        let f = fixture(config(), vec![Ok(creds(1, Some(at(T0 + 6 * 3600))))]);
        let first = f.minter.current().await.unwrap();
        assert_eq!(f.calls(), 1);
        f.set(T0 + 299);
        let again = f.minter.current().await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(f.minter.cached().as_deref(), Some(&*first));
        f.set(T0 + 300);
        let next = f.minter.current().await.unwrap();
        assert_ne!(first, next);
        assert!(String::from_utf8_lossy(&next).contains("20260101T000500Z"));
        // Credentials valid for hours more are reused, not fetched again.
        assert_eq!(f.calls(), 1);
    }

    #[tokio::test]
    async fn current_re_mints_before_the_credentials_expire() {
        // Credentials #1 expire at T0+10min: always fetched again (under the
        // 15-minute reuse margin); the token is fresh until expiry - 60 s.
        let f = fixture(
            config(),
            vec![
                Ok(creds(1, Some(at(T0 + 600)))),
                Ok(creds(1, Some(at(T0 + 600)))),
                Ok(creds(2, Some(at(T0 + 4 * 3600)))),
            ],
        );
        let first = f.minter.current().await.unwrap();
        f.set(T0 + 300);
        let second = f.minter.current().await.unwrap();
        assert_ne!(first, second);
        assert_eq!(f.calls(), 2);
        f.set(T0 + 539);
        assert!(Arc::ptr_eq(&second, &f.minter.current().await.unwrap()));
        f.set(T0 + 540);
        let third = f.minter.current().await.unwrap();
        assert_eq!(f.calls(), 3);
        assert!(String::from_utf8_lossy(&third).contains(&format!("Credential={KEY_ID}02/")));
    }

    #[tokio::test]
    async fn near_expiry_credentials_do_not_cause_a_mint_per_call() {
        let f = fixture(config(), vec![Ok(creds(1, Some(at(T0 + 30))))]);
        let first = f.minter.current().await.unwrap();
        f.set(T0 + 4);
        assert!(Arc::ptr_eq(&first, &f.minter.current().await.unwrap()));
        assert_eq!(f.calls(), 1);
        f.set(T0 + 5);
        let second = f.minter.current().await.unwrap();
        assert_ne!(first, second);
        assert_eq!(f.calls(), 2);
        // Past the credentials' expiry nothing is answered.
        f.set(T0 + 30);
        assert!(f.minter.current().await.is_err());
        assert!(f.minter.cached().is_none());
    }

    #[tokio::test]
    async fn a_failed_re_mint_answers_the_cached_token_while_usable() {
        let f = fixture(
            config(),
            vec![
                Ok(creds(1, Some(at(T0 + 800)))),
                Err("the ECS agent is down".into()),
            ],
        );
        let first = f.minter.current().await.unwrap();
        f.set(T0 + 300);
        assert!(Arc::ptr_eq(&first, &f.minter.current().await.unwrap()));
        assert_eq!(f.calls(), 2);
        // Within RETRY_AFTER_FAILURE the provider is not asked again.
        assert!(Arc::ptr_eq(&first, &f.minter.current().await.unwrap()));
        assert_eq!(f.calls(), 2);
        f.set(T0 + 301);
        assert!(f.minter.current().await.is_ok());
        assert_eq!(f.calls(), 3);
        // Ten minutes after signing the cached token is no longer answered.
        f.set(T0 + 600);
        let e = f.minter.current().await.unwrap_err();
        assert!(e.contains("the ECS agent is down"), "{e}");
        assert!(f.minter.cached().is_none());
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_mint() {
        let f = Arc::new(fixture(config(), vec![Ok(creds(1, Some(at(T0 + 3600))))]));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.minter.current().await.unwrap() })
            })
            .collect();
        let mut tokens = Vec::new();
        for t in tasks {
            tokens.push(t.await.unwrap());
        }
        assert!(tokens.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(f.calls(), 1);
    }

    #[test]
    fn errors_name_the_chain() {
        let e = credentials_error(&CredentialsError::not_loaded(
            "no credentials found in chain. Attempted:\n  Environment: not set",
        ));
        assert!(e.starts_with("no AWS credentials found."), "{e}");
        assert!(e.contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), "{e}");
        assert!(e.contains("Attempted: Environment: not set"), "{e}");
        assert!(!e.contains('\n'));
    }
}
