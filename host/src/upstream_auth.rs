//! The proxy's own credential toward its upstream.
//!
//! The caller's `authorization` identifies the caller *to the proxy*; it is
//! never forwarded. What reaches the backend is the proxy's identity, set by
//! an [`UpstreamAuth`] provider:
//!
//! * [`UpstreamAuth::None`]: nothing (the Spanner emulator, tests);
//! * [`UpstreamAuth::Static`]: a fixed header read at start-up (a shared
//!   secret in front of a backend that wants one);
//! * [`UpstreamAuth::Google`]: a short-lived OAuth 2.0 access token from
//!   Google application default credentials, through the official
//!   `google-cloud-auth` crate.
//!
//! Why Google credentials rather than a token in the configuration: access
//! tokens live an hour, so a static one would go stale, and a long-lived
//! secret (a key) pasted into the proxy's configuration is exactly what
//! workload identity exists to avoid. With ADC the proxy runs as the
//! attached service account on Google Cloud (metadata server), as a
//! workload-identity-federated principal elsewhere (`external_account`,
//! e.g. AWS-sourced), or, on a workstation, as the developer's gcloud login;
//! IAM on Spanner then grants that one principal, and every call carries the
//! proxy's identity toward Google while the audit log carries the caller's.
//!
//! The per-request path ([`UpstreamAuth::header`], [`UpstreamAuth::apply`])
//! never awaits and never locks: the current headers sit in an [`ArcSwap`]
//! that a background task replaces. That task asks `google-cloud-auth` every
//! minute (the library caches the token and refreshes it about four minutes
//! before it expires, so asking is cheap), keeps serving the last good
//! headers when a refresh fails, logs failures without the token, and
//! rebuilds the credentials from their source after a permanent failure, so
//! a replaced credentials file is picked up without a restart.
//!
//! `google-cloud-auth` is built without its default `aws-lc-rs` provider;
//! [`GoogleAuth`]'s constructors install rustls' `ring` provider as the
//! process default if none is installed (the rest of intentgate uses ring).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::aws_token::AwsTokenMinter;
use crate::gcp_federation::{GcpFederation, GcpFederationSettings};
use google_cloud_auth::credentials::{
    self, CacheableResource, Credentials, EntityTag, external_account,
    external_account_authorized_user, impersonated, service_account, user_account,
};
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{Extensions, HeaderMap};
use serde_json::Value;

/// The scope asked for when none is configured: Spanner data access.
pub const DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/spanner.data";

/// How often the background task asks `google-cloud-auth` for headers.
const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The longest one token fetch may take (at start-up, and per refresh).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that points ADC at a credentials file.
const ADC_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// The environment variable that overrides the quota project.
const QUOTA_PROJECT_ENV: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";

/// The proxy's credential toward its upstream.
pub enum UpstreamAuth {
    /// No credential (emulators, tests).
    None,
    /// One fixed header, e.g. read from a secret file at start-up.
    Static {
        /// The header's name (usually `authorization`).
        header: HeaderName,
        /// Its value (marked sensitive).
        value: HeaderValue,
    },
    /// Google access tokens, refreshed in the background.
    Google(GoogleAuth),
    /// This task's AWS workload token (a sidecar forwarding to a gateway),
    /// re-minted in the background.
    Aws(AwsUpstream),
}

/// A task token for the upstream, kept ready as a header value.
pub struct AwsUpstream {
    header: Arc<ArcSwapOption<HeaderValue>>,
    describe: String,
    refresher: tokio::task::JoinHandle<()>,
}

/// How often the background task asks the minter for its current token
/// (the minter re-mints every 5 minutes and before its credentials expire).
const AWS_REFRESH: Duration = Duration::from_secs(15);

impl AwsUpstream {
    /// Starts refreshing from `minter` (which has minted once already).
    ///
    /// # Errors
    /// When no first token can be had.
    pub async fn start(minter: Arc<AwsTokenMinter>) -> Result<Self, String> {
        let first = bearer(&minter.current().await?)?;
        let header = Arc::new(ArcSwapOption::from_pointee(first));
        let describe = format!(
            "an AWS workload token for audience `{}` (STS host {}, region {})",
            minter.audience(),
            minter.sts_host(),
            minter.region()
        );
        let shared = header.clone();
        let refresher = tokio::spawn(async move {
            let mut last: Option<Arc<Vec<u8>>> = None;
            loop {
                tokio::time::sleep(AWS_REFRESH).await;
                match minter.current().await {
                    Ok(token) if last.as_ref() != Some(&token) => match bearer(&token) {
                        Ok(value) => {
                            shared.store(Some(Arc::new(value)));
                            last = Some(token);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the minted AWS token is not a header value")
                        }
                    },
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot re-mint the AWS token for upstream; the last one is sent until it expires")
                    }
                }
            }
        });
        Ok(Self {
            header,
            describe,
            refresher,
        })
    }

    fn value(&self) -> Option<HeaderValue> {
        self.header.load_full().map(|v| (*v).clone())
    }
}

impl Drop for AwsUpstream {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

fn bearer(token: &[u8]) -> Result<HeaderValue, String> {
    let mut value = Vec::with_capacity(token.len() + 7);
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(token);
    let mut value = HeaderValue::from_bytes(&value)
        .map_err(|_| "the AWS token is not a valid header value".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

impl UpstreamAuth {
    /// The credential header to set on an upstream request now (`None` for
    /// [`UpstreamAuth::None`]).
    ///
    /// Cheap: no await, no lock. For Google credentials this is the
    /// `authorization` header; [`UpstreamAuth::apply`] also sets the quota
    /// project header when the credentials name one.
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Self::None => None,
            Self::Static { header, value } => Some((header.clone(), value.clone())),
            Self::Google(google) => google.header(),
            Self::Aws(aws) => aws.value().map(|v| (AUTHORIZATION, v)),
        }
    }

    /// Sets every header of the credential on `headers`, replacing headers
    /// of the same names (the caller's `authorization` included). Removes
    /// nothing else: stripping the caller's own credential stays the
    /// listener's job, for [`UpstreamAuth::None`] too.
    pub fn apply(&self, headers: &mut HeaderMap) {
        match self {
            Self::None => {}
            Self::Static { header, value } => {
                headers.insert(header.clone(), value.clone());
            }
            Self::Google(google) => google.apply(headers),
            Self::Aws(aws) => {
                if let Some(v) = aws.value() {
                    headers.insert(AUTHORIZATION, v);
                }
            }
        }
    }

    /// What the credential is, for a start-up log line (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none".to_string(),
            Self::Static { header, .. } => format!("a static `{header}` header"),
            Self::Google(google) => google.describe().to_string(),
            Self::Aws(aws) => aws.describe.clone(),
        }
    }
}

impl From<Option<(HeaderName, HeaderValue)>> for UpstreamAuth {
    /// `None` → [`UpstreamAuth::None`], `Some` → [`UpstreamAuth::Static`].
    fn from(credential: Option<(HeaderName, HeaderValue)>) -> Self {
        match credential {
            None => Self::None,
            Some((header, value)) => Self::Static { header, value },
        }
    }
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("UpstreamAuth::None"),
            Self::Static { header, .. } => f
                .debug_struct("UpstreamAuth::Static")
                .field("header", header)
                .field("value", &"[redacted]")
                .finish(),
            Self::Google(google) => f.debug_tuple("UpstreamAuth::Google").field(google).finish(),
            Self::Aws(aws) => write!(f, "UpstreamAuth::Aws({})", aws.describe),
        }
    }
}

/// Google access tokens (application default credentials or an explicit
/// credentials file), refreshed in the background.
///
/// Dropping it stops the background task.
pub struct GoogleAuth {
    current: Arc<ArcSwap<HeaderMap>>,
    description: String,
    refresher: tokio::task::JoinHandle<()>,
}

impl GoogleAuth {
    /// Application default credentials (`google-cloud-auth`'s
    /// `credentials::Builder::default()`: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then gcloud's ADC file, then the metadata server), scoped to `scopes`
    /// ([`DEFAULT_SCOPE`] when empty).
    ///
    /// Fetches the first token before returning, then refreshes in a
    /// background task. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// A printable line naming what ADC found (the credential type, where
    /// from, the token endpoint's host) and what to do, never a secret.
    pub async fn start(scopes: &[String]) -> Result<Self, String> {
        Self::launch(Source::Adc, scopes, REFRESH_INTERVAL).await
    }

    /// From an explicit credentials JSON file instead of ADC discovery:
    /// `service_account`, `authorized_user`, `external_account` (workload
    /// identity federation, file-, URL-, executable- or AWS-sourced),
    /// `impersonated_service_account` or `external_account_authorized_user`.
    /// Otherwise as [`GoogleAuth::start`].
    ///
    /// # Errors
    /// As [`GoogleAuth::start`]; also an unreadable or malformed file.
    pub async fn from_file(path: &Path, scopes: &[String]) -> Result<Self, String> {
        Self::launch(Source::File(path.to_path_buf()), scopes, REFRESH_INTERVAL).await
    }

    /// GCP workload identity federation from this task's AWS credentials
    /// (the AWS default chain, ECS container credentials included): a signed
    /// `GetCallerIdentity` subject token exchanged at `settings.token_url`,
    /// then, if configured, service-account impersonation
    /// ([`crate::gcp_federation`]). Otherwise as [`GoogleAuth::start`].
    ///
    /// # Errors
    /// Invalid settings, or no first token (naming the token endpoint's host).
    pub async fn from_aws(settings: &GcpFederationSettings) -> Result<Self, String> {
        let federation = GcpFederation::from_environment(settings)
            .await
            .map_err(|e| format!("upstream auth: Google credentials from AWS: {e}"))?;
        Self::from_federation(federation, &settings.scopes, REFRESH_INTERVAL).await
    }

    /// [`GoogleAuth::from_aws`] with a given federation and poll interval.
    pub(crate) async fn from_federation(
        federation: GcpFederation,
        scopes: &[String],
        interval: Duration,
    ) -> Result<Self, String> {
        Self::launch(Source::Aws(Arc::new(federation)), scopes, interval).await
    }

    /// The `authorization` header to send now.
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        self.current
            .load()
            .get(AUTHORIZATION)
            .map(|value| (AUTHORIZATION, value.clone()))
    }

    /// Sets every header of the credential (`authorization`, and
    /// `x-goog-user-project` when the credentials name a quota project).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.current.load().iter() {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// What the credentials are: type, origin and token endpoint host.
    pub fn describe(&self) -> &str {
        &self.description
    }

    async fn launch(source: Source, scopes: &[String], interval: Duration) -> Result<Self, String> {
        install_ring_provider();
        let scopes = if scopes.is_empty() {
            vec![DEFAULT_SCOPE.to_string()]
        } else {
            scopes.to_vec()
        };
        let (credentials, about) = build(&source, &scopes)?;
        let (headers, tag) = match fetch(&credentials, None).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return Err(about.failure("the library returned no headers")),
            Err(e) => return Err(about.fetch_failure(&e)),
        };
        let description = about.to_string();
        tracing::info!(credentials = %description, "upstream auth: Google access token obtained");
        let current = Arc::new(ArcSwap::from_pointee(headers));
        let refresher = tokio::spawn(refresh_loop(Refresher {
            current: current.clone(),
            credentials,
            tag: Some(tag),
            source,
            scopes,
            interval,
            description: description.clone(),
        }));
        Ok(Self {
            current,
            description,
            refresher,
        })
    }
}

impl Drop for GoogleAuth {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("credentials", &self.description)
            .finish_non_exhaustive()
    }
}

/// Installs rustls' ring provider as the process default unless one is
/// already installed: `google-cloud-auth` (without its `aws-lc-rs` default)
/// and its `reqwest` client use the process default for TLS and for signing
/// service-account JWTs, and panic without one.
fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: some provider is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Where the credentials come from.
#[derive(Clone, Debug)]
enum Source {
    Adc,
    File(PathBuf),
    Aws(Arc<GcpFederation>),
}

/// Builds the credentials (spawning the library's own token task) and says
/// what they are.
fn build(source: &Source, scopes: &[String]) -> Result<(Credentials, About), String> {
    match source {
        Source::Aws(federation) => {
            let about = About {
                kind: "external_account".to_string(),
                origin: federation.origin(),
                subject: Some(federation.subject()),
                endpoint: Some(url_host(federation.token_url())),
            };
            let credentials = federation
                .credentials(scopes, std::env::var(QUOTA_PROJECT_ENV).ok())
                .map_err(|e| about.failure(&e))?;
            Ok((credentials, about))
        }
        Source::Adc => {
            let about = About::adc(|name| std::env::var_os(name));
            let credentials = credentials::Builder::default()
                .with_scopes(scopes.iter().cloned())
                .build()
                .map_err(|e| about.failure(&chain(&e)))?;
            Ok((credentials, about))
        }
        Source::File(path) => {
            let origin = format!("file `{}`", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "upstream auth: cannot read the Google credentials file `{}`: {e}",
                    path.display()
                )
            })?;
            let json: Value = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "upstream auth: the Google credentials file `{}` is not JSON ({}): expected a \
                     service_account, authorized_user or external_account credentials file",
                    path.display(),
                    json_error_kind(&e)
                )
            })?;
            let about = About::json(origin, &json);
            let credentials =
                build_json(json, scopes).map_err(|e| about.failure(&chain(e.as_ref())))?;
            Ok((credentials, about))
        }
    }
}

/// The category of a JSON error, without its text (which may quote the file).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "cannot read",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// Builds credentials from a credentials JSON, as `google-cloud-auth`'s ADC
/// builder does for the file it finds (same types, same scope handling, same
/// quota-project override).
fn build_json(
    json: Value,
    scopes: &[String],
) -> Result<Credentials, Box<dyn std::error::Error + Send + Sync>> {
    let kind = json
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let quota = std::env::var(QUOTA_PROJECT_ENV).ok();
    let scopes = scopes.to_vec();
    let credentials = match kind.as_str() {
        "authorized_user" => {
            let b = user_account::Builder::new(json).with_scopes(scopes);
            match quota {
                Some(q) => b.with_quota_project_id(q),
                None => b,
            }
            .build()?
        }
        "service_account" => {
            let b = service_account::Builder::new(json)
                .with_access_specifier(service_account::AccessSpecifier::from_scopes(scopes));
            match quota {
                Some(q) => b.with_quota_project_id(q),
                None => b,
            }
            .build()?
        }
        "external_account" => {
            let b = external_account::Builder::new(json).with_scopes(scopes);
            match quota {
                Some(q) => b.with_quota_project_id(q),
                None => b,
            }
            .build()?
        }
        "impersonated_service_account" => {
            let b = impersonated::Builder::new(json).with_scopes(scopes);
            match quota {
                Some(q) => b.with_quota_project_id(q),
                None => b,
            }
            .build()?
        }
        "external_account_authorized_user" => {
            // Its scopes come from the file (the builder takes none).
            let b = external_account_authorized_user::Builder::new(json);
            match quota {
                Some(q) => b.with_quota_project_id(q),
                None => b,
            }
            .build()?
        }
        "" => return Err("the file has no string `type` field".into()),
        other => {
            return Err(format!(
                "unsupported credentials type `{other}` (expected service_account, \
                 authorized_user, external_account, impersonated_service_account or \
                 external_account_authorized_user)"
            )
            .into());
        }
    };
    Ok(credentials)
}

/// What a set of credentials is, for messages: never a secret.
#[derive(Clone, Debug, PartialEq)]
struct About {
    /// `authorized_user`, `service_account`, …, or `metadata server`.
    kind: String,
    /// Where the credentials were found.
    origin: String,
    /// Where an external account's subject token comes from.
    subject: Option<String>,
    /// The host tokens come from, if any.
    endpoint: Option<String>,
}

impl About {
    /// What ADC will find, by the library's rules (AIP-4110): the file named
    /// by `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's ADC file, else the
    /// metadata server.
    fn adc(var: impl Fn(&str) -> Option<OsString>) -> Self {
        if let Some(path) = var(ADC_ENV) {
            let path = PathBuf::from(path);
            return Self::file(format!("{ADC_ENV}=`{}`", path.display()), &path);
        }
        if let Some(home) = var("HOME") {
            let path =
                PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
            if path.exists() {
                return Self::file(format!("gcloud's ADC file `{}`", path.display()), &path);
            }
        }
        let host = var("GCE_METADATA_HOST")
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|| "metadata.google.internal".to_string());
        Self {
            kind: "metadata server".to_string(),
            origin: format!("no credentials file ({ADC_ENV} unset, no gcloud ADC file)"),
            subject: None,
            endpoint: Some(host),
        }
    }

    fn file(origin: String, path: &Path) -> Self {
        match std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        {
            Some(json) => Self::json(origin, &json),
            None => Self {
                kind: "unreadable".to_string(),
                origin,
                subject: None,
                endpoint: None,
            },
        }
    }

    fn json(origin: String, json: &Value) -> Self {
        let field = |name: &str| json.get(name).and_then(Value::as_str);
        let kind = field("type").unwrap_or("untyped").to_string();
        let endpoint = match kind.as_str() {
            "authorized_user" => {
                Some(field("token_uri").unwrap_or("https://oauth2.googleapis.com/token"))
            }
            "external_account" | "external_account_authorized_user" => {
                Some(field("token_url").unwrap_or("https://sts.googleapis.com/v1/token"))
            }
            "impersonated_service_account" => field("service_account_impersonation_url"),
            // Service-account keys sign their own JWTs: no token endpoint.
            _ => None,
        }
        .map(url_host);
        let subject = (kind == "external_account").then(|| {
            let source = json.get("credential_source");
            let text = |name: &str| source.and_then(|s| s.get(name)).and_then(Value::as_str);
            if text("environment_id").is_some_and(|id| id.starts_with("aws")) {
                "subject token from AWS".to_string()
            } else if source.and_then(|s| s.get("executable")).is_some() {
                "subject token from an executable".to_string()
            } else if let Some(url) = text("url") {
                format!("subject token from {}", url_host(url))
            } else if let Some(file) = text("file") {
                format!("subject token from file `{file}`")
            } else {
                "no recognised credential_source".to_string()
            }
        });
        Self {
            kind,
            origin,
            subject,
            endpoint,
        }
    }

    /// The start-up error of a failed token fetch: a transient one (an
    /// unreachable or failing endpoint) gets the network hint.
    fn fetch_failure(&self, error: &FetchError) -> String {
        if error.transient && self.kind != "metadata server" {
            format!(
                "upstream auth: cannot obtain a Google access token from {self}: {}. The token \
                 endpoint is unreachable or failing: check egress to it (DNS, firewall, HTTPS \
                 proxy) and retry",
                error.message
            )
        } else {
            self.failure(&error.message)
        }
    }

    /// The start-up error: what was found, what went wrong, what to do.
    fn failure(&self, error: &str) -> String {
        format!(
            "upstream auth: cannot obtain a Google access token from {self}: {error}. {}",
            self.hint()
        )
    }

    fn hint(&self) -> &'static str {
        match self.kind.as_str() {
            "metadata server" => {
                "Outside Google Cloud, point GOOGLE_APPLICATION_CREDENTIALS (or the listener's \
                 credentials file) at a service_account or external_account (workload identity \
                 federation) JSON, or run `gcloud auth application-default login`; on Google Cloud, \
                 attach a service account; against the emulator, use no upstream auth"
            }
            "authorized_user" => {
                "These are gcloud user credentials: run `gcloud auth application-default login` \
                 again, or use a service account or workload identity federation"
            }
            "service_account" => {
                "Check that the service account key is well-formed and not disabled or deleted"
            }
            "external_account" => {
                "Check the workload identity pool provider (audience), that the subject token \
                 source yields a current token, and that the token URL is reachable"
            }
            "impersonated_service_account" => {
                "Check the source credentials and that they hold \
                 roles/iam.serviceAccountTokenCreator on the target service account"
            }
            _ => {
                "Point the configuration (or GOOGLE_APPLICATION_CREDENTIALS) at a supported credentials JSON file"
            }
        }
    }
}

impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.as_str() {
            "metadata server" => write!(f, "the metadata server")?,
            kind => write!(f, "{kind} credentials")?,
        }
        write!(f, " ({}", self.origin)?;
        if let Some(subject) = &self.subject {
            write!(f, "; {subject}")?;
        }
        if let Some(host) = &self.endpoint {
            write!(f, "; token endpoint {host}")?;
        }
        f.write_str(")")
    }
}

/// The host (and port) of a URL, or the text itself if it has no scheme.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

/// An error and its sources, one line, without the library's boilerplate
/// (retry advice repeated at every level).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    const BOILERPLATE: [&str; 4] = [
        "Request to fetch the token failed",
        "Fetching the token resulted in transient errors",
        "cannot create the authentication headers",
        "cannot create auth headers",
    ];
    let mut all = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        let text = text
            .trim_end_matches(" and future attempts will not succeed")
            .trim_end_matches(" but future attempts may succeed")
            .trim()
            .to_string();
        all.push(text.clone());
        let generic = BOILERPLATE.iter().any(|b| text.starts_with(b));
        if !generic && !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        all.join(": ")
    } else {
        parts.join(": ")
    }
}

/// A failed fetch: the message (no token), and whether the library keeps
/// retrying by itself.
#[derive(Debug)]
struct FetchError {
    message: String,
    transient: bool,
}

/// Asks the library for headers: `Ok(None)` when unchanged since `tag`.
async fn fetch(
    credentials: &Credentials,
    tag: Option<&EntityTag>,
) -> Result<Option<(HeaderMap, EntityTag)>, FetchError> {
    let mut extensions = Extensions::new();
    if let Some(tag) = tag {
        extensions.insert(tag.clone());
    }
    let answer = tokio::time::timeout(FETCH_TIMEOUT, credentials.headers(extensions))
        .await
        .map_err(|_| FetchError {
            message: format!("no token within {} s", FETCH_TIMEOUT.as_secs()),
            transient: true,
        })?;
    match answer {
        Ok(CacheableResource::NotModified) => Ok(None),
        Ok(CacheableResource::New { entity_tag, data }) => {
            if data.contains_key(AUTHORIZATION) {
                Ok(Some((data, entity_tag)))
            } else {
                Err(FetchError {
                    message: "the credentials gave no `authorization` header".to_string(),
                    transient: false,
                })
            }
        }
        Err(e) => Err(FetchError {
            transient: e.is_transient(),
            message: chain(&e),
        }),
    }
}

/// The background task's state.
struct Refresher {
    current: Arc<ArcSwap<HeaderMap>>,
    credentials: Credentials,
    /// The tag of the headers served, `None` after a rebuild.
    tag: Option<EntityTag>,
    source: Source,
    scopes: Vec<String>,
    interval: Duration,
    description: String,
}

/// Every `interval`, asks the library for headers and publishes new ones.
/// Keeps the last good headers on failure. After a permanent failure the
/// library's token task has stopped for good, so the credentials are built
/// again from their source (a replaced file, a fixed environment).
async fn refresh_loop(mut r: Refresher) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + r.interval, r.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rebuild = false;
    loop {
        ticker.tick().await;
        if rebuild {
            match build(&r.source, &r.scopes) {
                Ok((credentials, _)) => {
                    r.credentials = credentials;
                    r.tag = None;
                    rebuild = false;
                }
                Err(e) => {
                    tracing::warn!(credentials = %r.description, error = %e, "upstream auth: cannot rebuild the Google credentials; serving the last token");
                    continue;
                }
            }
        }
        match fetch(&r.credentials, r.tag.as_ref()).await {
            Ok(None) => {}
            Ok(Some((headers, new_tag))) => {
                r.current.store(Arc::new(headers));
                r.tag = Some(new_tag);
                tracing::debug!(credentials = %r.description, "upstream auth: Google access token refreshed");
            }
            Err(e) => {
                tracing::warn!(
                    credentials = %r.description,
                    error = %e.message,
                    transient = e.transient,
                    "upstream auth: cannot refresh the Google access token; serving the last one"
                );
                rebuild = !e.transient;
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    /// One request the fake token endpoint received.
    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        content_type: String,
        body: String,
    }

    /// What the fake endpoint answers to its n-th request (from 1).
    type Answer = Arc<dyn Fn(usize) -> (StatusCode, String) + Send + Sync>;

    /// A tiny HTTP token endpoint on 127.0.0.1 that counts its calls.
    struct TokenServer {
        url: String,
        calls: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for TokenServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TokenServer {
        async fn start(answer: Answer) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/token", listener.local_addr().unwrap());
            let calls = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (c, s) = (calls.clone(), seen.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (c, s, answer) = (c.clone(), s.clone(), answer.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (c, s, answer) = (c.clone(), s.clone(), answer.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let content_type = req
                                    .headers()
                                    .get(http::header::CONTENT_TYPE)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string();
                                let body = req.into_body().collect().await?.to_bytes();
                                let body = String::from_utf8_lossy(&body).into_owned();
                                s.lock().unwrap().push(Seen {
                                    path,
                                    content_type,
                                    body,
                                });
                                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                                let (status, text) = answer(n);
                                let response = Response::builder()
                                    .status(status)
                                    .header(http::header::CONTENT_TYPE, "application/json")
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap();
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self {
                url,
                calls,
                seen,
                task,
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn token(n: usize, expires_in: u64) -> String {
        serde_json::json!({
            "access_token": format!("ya29.test-{n}"),
            "expires_in": expires_in,
            "token_type": "Bearer",
        })
        .to_string()
    }

    /// A credentials file in a fresh temporary directory.
    struct TempFile {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("intentgate-upstream-auth-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_json(name: &str, json: &Value) -> TempFile {
        let dir = temp_dir();
        let path = dir.join(name);
        std::fs::write(&path, json.to_string()).unwrap();
        TempFile { dir, path }
    }

    const CLIENT_SECRET: &str = "s3cret-client-secret";
    const REFRESH_TOKEN: &str = "1//s3cret-refresh-token";

    fn authorized_user(token_uri: &str) -> Value {
        serde_json::json!({
            "type": "authorized_user",
            "client_id": "test-client.apps.googleusercontent.com",
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": token_uri,
        })
    }

    fn bearer(auth: &GoogleAuth) -> String {
        auth.header().unwrap().1.to_str().unwrap().to_string()
    }

    /// Bounds every test: a hung fake must fail the test, not hang CI.
    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("test timed out")
    }

    #[test]
    fn none_and_static() {
        let none = UpstreamAuth::from(None);
        assert!(none.header().is_none());
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
        none.apply(&mut headers);
        assert_eq!(headers[AUTHORIZATION], "Bearer caller");

        let mut value = HeaderValue::from_static("Bearer proxy");
        value.set_sensitive(true);
        let fixed = UpstreamAuth::from(Some((AUTHORIZATION, value)));
        assert_eq!(fixed.header().unwrap().1, "Bearer proxy");
        fixed.apply(&mut headers);
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(headers[AUTHORIZATION], "Bearer proxy");
        let debug = format!("{fixed:?}");
        assert!(!debug.contains("proxy"), "{debug}");
        assert_eq!(fixed.describe(), "a static `authorization` header");
    }

    #[tokio::test]
    async fn authorized_user_token_is_served_and_cached() {
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| (StatusCode::OK, token(n, 3600)))).await;
            let file = write_json("adc.json", &authorized_user(&server.url));
            let auth = GoogleAuth::launch(
                Source::File(file.path.clone()),
                &[],
                Duration::from_millis(50),
            )
            .await
            .unwrap();
            assert_eq!(bearer(&auth), "Bearer ya29.test-1");
            assert!(auth.header().unwrap().1.is_sensitive());
            assert!(
                auth.describe().contains("authorized_user"),
                "{}",
                auth.describe()
            );
            assert!(auth.describe().contains("127.0.0.1"), "{}", auth.describe());

            // Many per-request reads and several background polls: one fetch.
            for _ in 0..10_000 {
                assert_eq!(auth.header().unwrap().0, AUTHORIZATION);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(bearer(&auth), "Bearer ya29.test-1");
            assert_eq!(server.calls(), 1);

            // The refresh request: JSON, the refresh-token grant, the default scope.
            let seen = server.seen();
            assert_eq!(seen[0].path, "/token");
            assert!(
                seen[0].content_type.starts_with("application/json"),
                "{:?}",
                seen[0]
            );
            let body: Value = serde_json::from_str(&seen[0].body).unwrap();
            assert_eq!(body["grant_type"], "refresh_token");
            assert_eq!(body["refresh_token"], REFRESH_TOKEN);
            assert_eq!(body["scope"], DEFAULT_SCOPE);

            // `apply` replaces the caller's authorization.
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
            UpstreamAuth::Google(auth).apply(&mut headers);
            assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
            assert_eq!(headers[AUTHORIZATION], "Bearer ya29.test-1");
        })
        .await;
    }

    #[tokio::test]
    async fn scopes_and_quota_project_are_passed() {
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| (StatusCode::OK, token(n, 3600)))).await;
            let mut json = authorized_user(&server.url);
            json["quota_project_id"] = "billing-project".into();
            let file = write_json("adc.json", &json);
            let scopes = vec![
                "https://www.googleapis.com/auth/spanner.data".to_string(),
                "https://www.googleapis.com/auth/cloud-platform".to_string(),
            ];
            let auth = GoogleAuth::from_file(&file.path, &scopes).await.unwrap();
            let body: Value = serde_json::from_str(&server.seen()[0].body).unwrap();
            assert_eq!(body["scope"], scopes.join(" "));
            let mut headers = HeaderMap::new();
            auth.apply(&mut headers);
            assert_eq!(headers["x-goog-user-project"], "billing-project");
            assert_eq!(headers[AUTHORIZATION], "Bearer ya29.test-1");
        })
        .await;
    }

    #[tokio::test]
    async fn token_endpoint_errors_fail_start_up_clearly() {
        bounded(async {
            for status in [StatusCode::BAD_REQUEST, StatusCode::INTERNAL_SERVER_ERROR] {
                let server = TokenServer::start(Arc::new(move |_| {
                    (
                        status,
                        r#"{"error":"invalid_grant","error_description":"Bad Request"}"#
                            .to_string(),
                    )
                }))
                .await;
                let file = write_json("adc.json", &authorized_user(&server.url));
                let error = GoogleAuth::from_file(&file.path, &[]).await.unwrap_err();
                assert!(error.contains("authorized_user"), "{error}");
                assert!(error.contains("127.0.0.1"), "{error}");
                assert!(error.contains(&file.path.display().to_string()), "{error}");
                assert!(error.contains("invalid_grant"), "{error}");
                let hint = if status.is_server_error() {
                    "check egress"
                } else {
                    "gcloud auth application-default login"
                };
                assert!(error.contains(hint), "{error}");
                assert!(!error.contains(CLIENT_SECRET), "{error}");
                assert!(!error.contains(REFRESH_TOKEN), "{error}");
                assert_eq!(server.calls(), 1, "{status}: no retry at start-up");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn unreachable_token_endpoint_fails_start_up() {
        bounded(async {
            // A port that was just free: connection refused.
            let port = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let file = write_json(
                "adc.json",
                &authorized_user(&format!("http://127.0.0.1:{port}/token")),
            );
            let error = GoogleAuth::from_file(&file.path, &[]).await.unwrap_err();
            assert!(
                error.contains(&format!("token endpoint 127.0.0.1:{port}")),
                "{error}"
            );
            assert!(error.contains("Connection refused"), "{error}");
            assert!(error.contains("check egress"), "{error}");
        })
        .await;
    }

    #[tokio::test]
    async fn bad_files_fail_start_up_clearly() {
        bounded(async {
            let missing = temp_dir().join("missing.json");
            let error = GoogleAuth::from_file(&missing, &[]).await.unwrap_err();
            assert!(
                error.contains("cannot read") && error.contains("missing.json"),
                "{error}"
            );
            let _ = std::fs::remove_dir_all(missing.parent().unwrap());

            let dir = temp_dir();
            let path = dir.join("garbage.json");
            std::fs::write(&path, "not json s3cret").unwrap();
            let error = GoogleAuth::from_file(&path, &[]).await.unwrap_err();
            assert!(error.contains("not JSON"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
            let _ = std::fs::remove_dir_all(&dir);

            let file = write_json(
                "x.json",
                &serde_json::json!({"type": "api_key", "key": "s3cret"}),
            );
            let error = GoogleAuth::from_file(&file.path, &[]).await.unwrap_err();
            assert!(
                error.contains("unsupported credentials type `api_key`"),
                "{error}"
            );
            assert!(!error.contains("s3cret"), "{error}");

            let file = write_json("x.json", &serde_json::json!({"type": "authorized_user"}));
            let error = GoogleAuth::from_file(&file.path, &[]).await.unwrap_err();
            assert!(error.contains("authorized_user credentials"), "{error}");
        })
        .await;
    }

    #[tokio::test]
    async fn short_lived_token_is_refreshed_and_old_one_served_until_then() {
        // google-cloud-auth refreshes a token with under 4 min left every
        // 10 s: token 1 (2 s) is replaced by token 2 about 10 s in.
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| {
                (StatusCode::OK, token(n, if n == 1 { 2 } else { 3600 }))
            }))
            .await;
            let file = write_json("adc.json", &authorized_user(&server.url));
            let auth = GoogleAuth::launch(
                Source::File(file.path.clone()),
                &[],
                Duration::from_millis(100),
            )
            .await
            .unwrap();
            let started = tokio::time::Instant::now();
            assert_eq!(bearer(&auth), "Bearer ya29.test-1");
            let mut old_seen_after_expiry = false;
            loop {
                let now = bearer(&auth);
                if now == "Bearer ya29.test-2" {
                    break;
                }
                assert_eq!(now, "Bearer ya29.test-1");
                if started.elapsed() > Duration::from_secs(3) {
                    old_seen_after_expiry = true;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "no refresh");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                old_seen_after_expiry,
                "the last good header is kept until the refresh"
            );
            assert!(
                started.elapsed() >= Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(server.calls(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn permanent_refresh_failure_rebuilds_from_the_file() {
        // Token 1 lives 2 s; the next fetch is refused (400, permanent: the
        // library's token task stops); the credentials are rebuilt from the
        // file and fetch token 3.
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| match n {
                1 => (StatusCode::OK, token(n, 2)),
                2 => (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_grant"}"#.to_string(),
                ),
                _ => (StatusCode::OK, token(n, 3600)),
            }))
            .await;
            let file = write_json("adc.json", &authorized_user(&server.url));
            let auth = GoogleAuth::launch(
                Source::File(file.path.clone()),
                &[],
                Duration::from_millis(100),
            )
            .await
            .unwrap();
            let started = tokio::time::Instant::now();
            while bearer(&auth) != "Bearer ya29.test-3" {
                assert_eq!(bearer(&auth), "Bearer ya29.test-1");
                assert!(started.elapsed() < Duration::from_secs(40), "no rebuild");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(server.calls(), 3);
        })
        .await;
    }

    /// Decodes an `application/x-www-form-urlencoded` body.
    fn form(body: &str) -> HashMap<String, String> {
        fn decode(s: &str) -> String {
            let bytes = s.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < bytes.len() => {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }
        body.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    #[tokio::test]
    async fn external_account_exchanges_the_file_token_at_sts() {
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| {
                let body = serde_json::json!({
                    "access_token": format!("ya29.sts-{n}"),
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                });
                (StatusCode::OK, body.to_string())
            }))
            .await;
            let dir = temp_dir();
            let subject = dir.join("subject-token");
            std::fs::write(&subject, "eyJ.subject.token").unwrap();
            let audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/provider";
            let file = write_json(
                "wif.json",
                &serde_json::json!({
                    "type": "external_account",
                    "audience": audience,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": server.url,
                    "credential_source": { "file": subject.display().to_string() },
                }),
            );
            let auth = GoogleAuth::from_file(&file.path, &[]).await.unwrap();
            assert_eq!(bearer(&auth), "Bearer ya29.sts-1");
            assert!(auth.describe().contains("external_account"), "{}", auth.describe());
            assert_eq!(server.calls(), 1);

            let seen = server.seen();
            assert!(seen[0].content_type.starts_with("application/x-www-form-urlencoded"), "{:?}", seen[0]);
            let fields = form(&seen[0].body);
            assert_eq!(fields["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
            assert_eq!(fields["audience"], audience);
            assert_eq!(fields["subject_token"], "eyJ.subject.token");
            assert_eq!(fields["subject_token_type"], "urn:ietf:params:oauth:token-type:jwt");
            assert_eq!(fields["requested_token_type"], "urn:ietf:params:oauth:token-type:access_token");
            assert_eq!(fields["scope"], DEFAULT_SCOPE);
            let _ = std::fs::remove_dir_all(&dir);
        })
        .await;
    }

    #[tokio::test]
    async fn external_account_missing_subject_token_fails_clearly() {
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| (StatusCode::OK, token(n, 3600)))).await;
            let file = write_json(
                "wif.json",
                &serde_json::json!({
                    "type": "external_account",
                    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": server.url,
                    "credential_source": { "file": "/nonexistent/intentgate/subject-token" },
                }),
            );
            let error = GoogleAuth::from_file(&file.path, &[]).await.unwrap_err();
            assert!(error.contains("external_account"), "{error}");
            assert!(
                error.contains("subject token from file `/nonexistent/intentgate/subject-token`"),
                "{error}"
            );
            assert_eq!(server.calls(), 0);
        })
        .await;
    }

    #[test]
    fn adc_discovery_is_described() {
        let dir = temp_dir();
        let env = |vars: Vec<(&'static str, OsString)>| {
            let vars: HashMap<&str, OsString> = vars.into_iter().collect();
            move |name: &str| vars.get(name).cloned()
        };

        // Nothing: the metadata server.
        let about = About::adc(env(vec![("HOME", dir.clone().into_os_string())]));
        assert_eq!(about.kind, "metadata server");
        assert_eq!(about.endpoint.as_deref(), Some("metadata.google.internal"));
        assert!(
            about
                .failure("x")
                .contains("GOOGLE_APPLICATION_CREDENTIALS")
        );
        let about = About::adc(env(vec![("GCE_METADATA_HOST", "127.0.0.1:8080".into())]));
        assert_eq!(about.endpoint.as_deref(), Some("127.0.0.1:8080"));

        // gcloud's well-known file.
        let gcloud = dir.join(".config/gcloud");
        std::fs::create_dir_all(&gcloud).unwrap();
        std::fs::write(
            gcloud.join("application_default_credentials.json"),
            authorized_user("https://oauth2.example.test:8443/token?x=1").to_string(),
        )
        .unwrap();
        let about = About::adc(env(vec![("HOME", dir.clone().into_os_string())]));
        assert_eq!(about.kind, "authorized_user");
        assert!(about.origin.contains("gcloud's ADC file"), "{about}");
        assert_eq!(about.endpoint.as_deref(), Some("oauth2.example.test:8443"));

        // GOOGLE_APPLICATION_CREDENTIALS wins.
        let key = dir.join("key.json");
        std::fs::write(
            &key,
            serde_json::json!({"type": "service_account", "private_key": "s3cret"}).to_string(),
        )
        .unwrap();
        let about = About::adc(env(vec![
            ("HOME", dir.clone().into_os_string()),
            (ADC_ENV, key.clone().into_os_string()),
        ]));
        assert_eq!(about.kind, "service_account");
        assert_eq!(about.endpoint, None);
        let text = about.failure("boom");
        assert!(
            text.contains("GOOGLE_APPLICATION_CREDENTIALS=") && text.contains("key.json"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn external_account_sources_are_described() {
        let about = |source: Value| {
            let json = serde_json::json!({"type": "external_account", "credential_source": source});
            About::json("file `x`".to_string(), &json).to_string()
        };
        let aws = about(serde_json::json!({
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        }));
        assert_eq!(
            aws,
            "external_account credentials (file `x`; subject token from AWS; token endpoint sts.googleapis.com)"
        );
        let url = about(serde_json::json!({"url": "http://127.0.0.1:5/token?secret=1"}));
        assert!(url.contains("subject token from 127.0.0.1:5;"), "{url}");
        let exe = about(serde_json::json!({"executable": {"command": "/bin/x"}}));
        assert!(exe.contains("subject token from an executable"), "{exe}");
    }

    #[tokio::test]
    async fn service_account_key_signs_locally_with_ring() {
        // A throwaway RSA key from the openssl CLI (no key in the sources).
        let dir = temp_dir();
        let pem = dir.join("key.pem");
        let generated = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .output();
        if !generated.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: no openssl CLI to make a test key");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key-id",
            "private_key": std::fs::read_to_string(&pem).unwrap(),
            "client_email": "proxy@test-project.iam.gserviceaccount.com",
            "token_uri": "http://127.0.0.1:9/never-used",
        });
        let file = write_json("sa.json", &key);
        let _ = std::fs::remove_dir_all(&dir);
        let auth = bounded(GoogleAuth::from_file(&file.path, &[]))
            .await
            .unwrap();
        assert!(
            auth.describe().starts_with("service_account credentials"),
            "{}",
            auth.describe()
        );
        let value = bearer(&auth);
        let jwt = value.strip_prefix("Bearer ").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let decode = |part: &str| -> Value {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "test-key-id");
        assert_eq!(claims["iss"], "proxy@test-project.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], DEFAULT_SCOPE);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://oauth2.googleapis.com/token"),
            "oauth2.googleapis.com"
        );
        assert_eq!(url_host("http://u:p@127.0.0.1:9/t?q#f"), "127.0.0.1:9");
        assert_eq!(url_host("sts.googleapis.com"), "sts.googleapis.com");
    }

    /// The child half of `adc_start_reads_google_application_credentials`:
    /// run only by it, in a process whose environment it set.
    #[tokio::test]
    #[ignore = "run by adc_start_reads_google_application_credentials"]
    async fn adc_child() {
        let Some(path) = std::env::var_os("INTENTGATE_TEST_ADC_CHILD") else {
            return;
        };
        bounded(async {
            let server = TokenServer::start(Arc::new(|n| (StatusCode::OK, token(n, 3600)))).await;
            std::fs::write(&path, authorized_user(&server.url).to_string()).unwrap();
            let auth = GoogleAuth::start(&[]).await.unwrap();
            assert_eq!(bearer(&auth), "Bearer ya29.test-1");
            assert!(
                auth.describe().contains("GOOGLE_APPLICATION_CREDENTIALS="),
                "{}",
                auth.describe()
            );
            assert_eq!(server.calls(), 1);
        })
        .await;
    }

    /// `start()` goes through the library's own ADC discovery: run in a
    /// child process, since the environment cannot be changed safely here.
    #[test]
    fn adc_start_reads_google_application_credentials() {
        let dir = temp_dir();
        let path = dir.join("adc.json");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "upstream_auth::tests::adc_child",
                "--ignored",
                "--nocapture",
            ])
            .env("INTENTGATE_TEST_ADC_CHILD", &path)
            .env(ADC_ENV, &path)
            .env("HOME", &dir)
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env_remove(QUOTA_PROJECT_ENV)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
