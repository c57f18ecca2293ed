//! Google access tokens from this task's AWS credentials: GCP workload
//! identity federation from AWS (`upstream_credential = { google_from_aws = { ... } }`).
//!
//! The flow, as Google's own libraries run it (AIP-4117):
//!
//! 1. **Subject token.** The task's AWS credentials (the AWS default chain:
//!    on ECS, the task role's container credentials) sign one
//!    `sts:GetCallerIdentity` request that names the workload identity pool
//!    provider in the signed `x-goog-cloud-target-resource` header
//!    ([`crate::aws_token::sign_gcp_subject_token`]). The secret key never
//!    leaves the process; Google replays the signed request to AWS STS to
//!    learn who signed it.
//! 2. **Token exchange.** Google STS (`token_url`, default
//!    `https://sts.googleapis.com/v1/token`) trades it for a federated access
//!    token (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//!    `subject_token_type=urn:ietf:params:aws:token-type:aws4_request`).
//!    `google-cloud-auth`'s `external_account::ProgrammaticBuilder` does this
//!    and caches the token, refreshing it about four minutes before expiry,
//!    with [`AwsSubjectTokens`] as its subject-token source: the library's
//!    own AWS source reads only environment keys and EC2 instance metadata,
//!    not ECS container credentials.
//! 3. **Impersonation (optional).** With `service_account_impersonation_url`,
//!    the federated token (scoped to IAM) buys a service account's token from
//!    IAM credentials `generateAccessToken` (lifetime one hour). This step is
//!    ours ([`Impersonated`]): `ProgrammaticBuilder` can only name a target
//!    principal on the fixed host `iamcredentials.googleapis.com`, so the
//!    endpoint could not be configured (or tested). Its token is cached and
//!    fetched again once it expires within [`REFRESH_SLACK`].
//!
//! [`crate::upstream_auth::GoogleAuth::from_aws`] serves the result, polling
//! in the background like every Google credential. Neither AWS credentials,
//! subject tokens nor access tokens are ever logged.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::error::CredentialsError as AwsCredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use google_cloud_auth::credentials::subject_token::{
    Builder as SubjectTokenBuilder, SubjectToken, SubjectTokenProvider,
};
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag, external_account,
};
use google_cloud_auth::errors::{CredentialsError, SubjectTokenProviderError};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Extensions, HeaderMap};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::aws_token;

/// The subject token type of a signed AWS `GetCallerIdentity` request.
pub const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// Google STS's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
/// The scope the federated token gets when a service account is impersonated
/// (what `generateAccessToken` needs), as in `google-cloud-auth`.
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// The lifetime asked of `generateAccessToken` (its default and maximum
/// without an org policy exception).
pub const IMPERSONATION_LIFETIME: Duration = Duration::from_secs(3600);
/// An impersonated token is fetched again once it expires within this
/// (`google-cloud-auth`'s slack for its own tokens).
pub const REFRESH_SLACK: Duration = Duration::from_secs(240);
/// The longest one `generateAccessToken` call may take.
const IMPERSONATION_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest `generateAccessToken` answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The `x-goog-user-project` header (quota project).
const USER_PROJECT: HeaderName = HeaderName::from_static("x-goog-user-project");

fn default_token_url() -> String {
    DEFAULT_TOKEN_URL.to_string()
}

/// `upstream_credential = { google_from_aws = { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpFederationSettings {
    /// The workload identity pool provider's full name:
    /// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
    pub audience: String,
    /// Google STS's token endpoint (default [`DEFAULT_TOKEN_URL`]).
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/<email>:generateAccessToken`
    /// to act as that service account; `None`: the federated principal itself.
    #[serde(default)]
    pub service_account_impersonation_url: Option<String>,
    /// OAuth scopes of the token sent upstream; empty means Spanner data
    /// access ([`crate::upstream_auth::DEFAULT_SCOPE`]).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The AWS region the subject token is signed for (default: the AWS
    /// chain's, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// The AWS STS host named in the subject token (default
    /// `sts.<region>.amazonaws.com`).
    #[serde(default)]
    pub sts_host: Option<String>,
}

impl GcpFederationSettings {
    /// Settings for `audience` with every default.
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            token_url: default_token_url(),
            service_account_impersonation_url: None,
            scopes: Vec::new(),
            region: None,
            sts_host: None,
        }
    }

    /// Checks every field; answers the signing region and the STS host.
    ///
    /// # Errors
    /// A line naming the field and what is wrong.
    pub fn check(&self) -> Result<(String, String), String> {
        check_audience(&self.audience)?;
        check_url("token_url", &self.token_url)?;
        if let Some(url) = &self.service_account_impersonation_url {
            check_url("service_account_impersonation_url", url)?;
            if service_account(url).is_none() {
                return Err(format!(
                    "service_account_impersonation_url `{url}` must end in \
                     `/serviceAccounts/<email>:generateAccessToken`"
                ));
            }
        }
        for scope in &self.scopes {
            if scope.is_empty() || !scope.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "scope `{scope}` must be a non-empty URL without spaces"
                ));
            }
        }
        aws_token::sts_region_and_host(self.region.as_deref(), self.sts_host.as_deref())
    }
}

/// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
fn check_audience(audience: &str) -> Result<(), String> {
    let shape = || {
        let rest = audience.strip_prefix("//iam.googleapis.com/projects/")?;
        let (number, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("locations/global/workloadIdentityPools/")?;
        let (pool, rest) = rest.split_once('/')?;
        let provider = rest.strip_prefix("providers/")?;
        let id = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        (!number.is_empty()
            && number.len() <= 20
            && number.bytes().all(|b| b.is_ascii_digit())
            && id(pool)
            && id(provider))
        .then_some(())
    };
    shape().ok_or_else(|| {
        format!(
            "audience `{audience}` is not a workload identity pool provider: expected \
             `//iam.googleapis.com/projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`"
        )
    })
}

/// An `https://` URL, or `http://` to a loopback host (a local fake): the
/// subject token and the federated token never cross a network in clear.
fn check_url(field: &str, url: &str) -> Result<(), String> {
    let parsed = url.parse::<http::Uri>().ok();
    let host = parsed.as_ref().and_then(http::Uri::host);
    let ok = match (parsed.as_ref().and_then(http::Uri::scheme_str), host) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} `{url}` must be an https:// URL (http:// only to a loopback host)"
        ))
    }
}

/// The service account's email in an impersonation URL.
fn service_account(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("/serviceAccounts/")?;
    let email = rest.strip_suffix(":generateAccessToken")?;
    (!email.is_empty() && !email.contains(['/', '?', '#', ':'])).then_some(email)
}

/// The host (and port) of a URL.
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_string()))
        .map(|a| a.rsplit_once('@').map_or(a.clone(), |(_, h)| h.to_string()))
        .unwrap_or_else(|| url.to_string())
}

/// A failure to make a subject token.
#[derive(Debug)]
pub struct SubjectTokenError {
    message: String,
    transient: bool,
}

impl fmt::Display for SubjectTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SubjectTokenError {}

impl SubjectTokenProviderError for SubjectTokenError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Signs a fresh AWS subject token for every exchange (`google-cloud-auth`
/// asks once per federated token, about hourly, and on retries).
#[derive(Debug)]
pub struct AwsSubjectTokens {
    credentials: SharedCredentialsProvider,
    target_resource: String,
    region: String,
    sts_host: String,
}

impl SubjectTokenProvider for AwsSubjectTokens {
    type Error = SubjectTokenError;

    async fn subject_token(&self) -> Result<SubjectToken, SubjectTokenError> {
        let credentials =
            self.credentials
                .provide_credentials()
                .await
                .map_err(|e| SubjectTokenError {
                    // No credentials at all, or a broken configuration, needs a
                    // person; anything else (the ECS agent briefly away) may pass.
                    transient: !matches!(
                        e,
                        AwsCredentialsError::CredentialsNotLoaded(_)
                            | AwsCredentialsError::InvalidConfiguration(_)
                    ),
                    message: aws_token::credentials_error(&e),
                })?;
        let now = SystemTime::now();
        if credentials.expiry().is_some_and(|expire| expire <= now) {
            return Err(SubjectTokenError {
                message: "the AWS credentials the chain returned have already expired".to_string(),
                transient: true,
            });
        }
        let token = aws_token::sign_gcp_subject_token(
            &credentials,
            &self.target_resource,
            &self.region,
            &self.sts_host,
            now,
        )
        .map_err(|message| SubjectTokenError {
            message,
            transient: false,
        })?;
        tracing::debug!(sts_host = %self.sts_host, region = %self.region, "signed an AWS subject token for Google STS");
        Ok(SubjectTokenBuilder::new(token).build())
    }
}

/// Workload identity federation from AWS, checked and ready to build
/// `google-cloud-auth` credentials.
#[derive(Debug)]
pub struct GcpFederation {
    audience: String,
    token_url: String,
    impersonation_url: Option<String>,
    region: String,
    sts_host: String,
    subject: Arc<AwsSubjectTokens>,
}

impl GcpFederation {
    /// Signs with the AWS default credentials chain (environment, profile,
    /// web identity, ECS container credentials, EC2 instance metadata).
    /// Fetches no credentials yet.
    ///
    /// # Errors
    /// Invalid settings, or no AWS credentials provider.
    pub async fn from_environment(settings: &GcpFederationSettings) -> Result<Self, String> {
        settings.check()?;
        let (credentials, region) = aws_token::default_chain(settings.region.clone()).await?;
        Self::new(settings, credentials, region)
    }

    /// Signs with `credentials` (any AWS provider), for `region` when the
    /// settings name none.
    ///
    /// # Errors
    /// Invalid settings.
    pub fn new(
        settings: &GcpFederationSettings,
        credentials: SharedCredentialsProvider,
        region: Option<String>,
    ) -> Result<Self, String> {
        settings.check()?;
        let (region, sts_host) = aws_token::sts_region_and_host(
            settings.region.as_deref().or(region.as_deref()),
            settings.sts_host.as_deref(),
        )?;
        Ok(Self {
            audience: settings.audience.clone(),
            token_url: settings.token_url.clone(),
            impersonation_url: settings.service_account_impersonation_url.clone(),
            subject: Arc::new(AwsSubjectTokens {
                credentials,
                target_resource: settings.audience.clone(),
                region: region.clone(),
                sts_host: sts_host.clone(),
            }),
            region,
            sts_host,
        })
    }

    /// The Google STS token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// What these credentials are, for messages (no secret).
    pub fn origin(&self) -> String {
        let mut text = format!(
            "AWS workload identity federation, provider `{}`",
            self.audience
        );
        if let Some(url) = &self.impersonation_url {
            text.push_str(&format!(
                ", impersonating `{}` via {}",
                service_account(url).unwrap_or("?"),
                host_of(url)
            ));
        }
        text
    }

    /// Where the subject token comes from, for messages.
    pub fn subject(&self) -> String {
        format!(
            "subject token signed with the AWS credentials chain for {} ({})",
            self.sts_host, self.region
        )
    }

    /// Builds the credentials (spawning `google-cloud-auth`'s token task):
    /// the exchange at the token URL, then, if configured, impersonation.
    /// `scopes` are the upstream token's; `quota_project` becomes
    /// `x-goog-user-project`.
    ///
    /// # Errors
    /// When the library refuses the configuration, or no HTTPS client can be
    /// made for impersonation.
    pub fn credentials(
        &self,
        scopes: &[String],
        quota_project: Option<String>,
    ) -> Result<Credentials, String> {
        let sts_scopes = if self.impersonation_url.is_some() {
            vec![IAM_SCOPE.to_string()]
        } else {
            scopes.to_vec()
        };
        let builder = external_account::ProgrammaticBuilder::new(self.subject.clone())
            .with_audience(self.audience.clone())
            .with_subject_token_type(AWS_SUBJECT_TOKEN_TYPE)
            .with_token_url(self.token_url.clone())
            .with_scopes(sts_scopes);
        let Some(url) = &self.impersonation_url else {
            let builder = match quota_project {
                Some(project) => builder.with_quota_project_id(project),
                None => builder,
            };
            return builder.build().map_err(|e| e.to_string());
        };
        let federated = builder.build().map_err(|e| e.to_string())?;
        let impersonated = Impersonated {
            federated,
            url: url.clone(),
            scopes: scopes.to_vec(),
            quota_project,
            client: https_client()?,
            cached: tokio::sync::Mutex::new(None),
        };
        Ok(Credentials::from(impersonated))
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP/1 client on rustls + ring with the system's roots (`http://` too,
/// for loopback fakes).
fn https_client() -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate rustls cannot parse is skipped, as by hyper-rustls.
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("cannot set up TLS for IAM credentials: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// The impersonated token currently served.
struct Current {
    headers: HeaderMap,
    tag: EntityTag,
    expires: Instant,
}

/// A service account's tokens, bought from IAM credentials with the
/// federated token.
pub struct Impersonated {
    federated: Credentials,
    url: String,
    scopes: Vec<String>,
    quota_project: Option<String>,
    client: HttpsClient,
    cached: tokio::sync::Mutex<Option<Current>>,
}

impl fmt::Debug for Impersonated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impersonated")
            .field("url", &self.url)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct GenerateAccessTokenAnswer {
    #[serde(rename = "accessToken")]
    access_token: String,
    #[serde(rename = "expireTime")]
    expire_time: String,
}

impl Impersonated {
    async fn fetch(&self) -> Result<Current, CredentialsError> {
        let source = match self.federated.headers(Extensions::new()).await? {
            CacheableResource::New { data, .. } => data,
            CacheableResource::NotModified => {
                return Err(CredentialsError::from_msg(
                    false,
                    "the federated credentials answered `not modified` to an untagged request",
                ));
            }
        };
        let authorization = source.get(AUTHORIZATION).cloned().ok_or_else(|| {
            CredentialsError::from_msg(false, "the federated credentials gave no authorization")
        })?;
        let body = serde_json::json!({
            "scope": self.scopes,
            "lifetime": format!("{}s", IMPERSONATION_LIFETIME.as_secs()),
        })
        .to_string();
        let host = host_of(&self.url);
        let request = http::Request::post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| {
                CredentialsError::from_msg(false, format!("cannot build the IAM request: {e}"))
            })?;
        let response = tokio::time::timeout(IMPERSONATION_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| {
                CredentialsError::from_msg(
                    true,
                    format!(
                        "IAM credentials ({host}) did not answer within {} s",
                        IMPERSONATION_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                CredentialsError::from_msg(
                    true,
                    format!("cannot reach IAM credentials ({host}): {}", chain(&e)),
                )
            })?;
        let status = response.status();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
        let answer = tokio::time::timeout(IMPERSONATION_TIMEOUT, limited.collect())
            .await
            .map_err(|_| {
                CredentialsError::from_msg(true, format!("IAM credentials ({host}) stalled"))
            })?
            .map_err(|e| {
                CredentialsError::from_msg(
                    true,
                    format!("cannot read the IAM credentials ({host}) answer: {e}"),
                )
            })?
            .to_bytes();
        if !status.is_success() {
            let transient = status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT;
            return Err(CredentialsError::from_msg(
                transient,
                format!(
                    "IAM credentials ({host}) refused to impersonate the service account: {status}{}",
                    google_error(&answer)
                ),
            ));
        }
        let answer: GenerateAccessTokenAnswer = serde_json::from_slice(&answer).map_err(|_| {
            CredentialsError::from_msg(
                false,
                format!("IAM credentials ({host}) answered no accessToken/expireTime JSON"),
            )
        })?;
        let expire = parse_timestamp(&answer.expire_time).ok_or_else(|| {
            CredentialsError::from_msg(
                false,
                format!(
                    "IAM credentials ({host}) answered an unreadable expireTime `{}`",
                    answer.expire_time
                ),
            )
        })?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", answer.access_token)).map_err(|_| {
                CredentialsError::from_msg(false, "the impersonated token is not a header value")
            })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Some(project) = &self.quota_project {
            let project = HeaderValue::try_from(project.as_str()).map_err(|_| {
                CredentialsError::from_msg(false, "the quota project is not a header value")
            })?;
            headers.insert(USER_PROJECT, project);
        }
        let left = expire
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tracing::debug!(iam = %host, expires_in_s = left.as_secs(), "impersonated the service account");
        Ok(Current {
            headers,
            tag: EntityTag::new(),
            expires: Instant::now() + left,
        })
    }
}

impl CredentialsProvider for Impersonated {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|c| Instant::now() + REFRESH_SLACK < c.expires);
        if !fresh {
            match self.fetch().await {
                Ok(current) => *cached = Some(current),
                Err(e) => match cached.as_ref() {
                    Some(c) if Instant::now() < c.expires => {
                        tracing::warn!(error = %e, "cannot impersonate the service account again; serving the current token until it expires");
                    }
                    _ => return Err(e),
                },
            }
        }
        let Some(current) = cached.as_ref() else {
            return Err(CredentialsError::from_msg(false, "no impersonated token"));
        };
        Ok(match extensions.get::<EntityTag>() {
            Some(tag) if *tag == current.tag => CacheableResource::NotModified,
            _ => CacheableResource::New {
                entity_tag: current.tag.clone(),
                data: current.headers.clone(),
            },
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        Some("googleapis.com".to_string())
    }
}

/// `: <message>` from a Google error body (`{"error":{"message":…}}` or
/// OAuth's `error_description`), at most 300 characters; empty otherwise.
fn google_error(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("error_description"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if message.is_empty() {
        String::new()
    } else {
        format!(": {}", message.chars().take(300).collect::<String>())
    }
}

/// An error and its sources on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}

/// A protobuf JSON timestamp (`2026-01-01T00:00:00Z`, optional fraction,
/// always UTC); the fraction is dropped.
fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let body = text.strip_suffix('Z')?;
    let (whole, fraction) = body.split_once('.').unwrap_or((body, "0"));
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let b = whole.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        let part = whole.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = crate::clock::days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests;
