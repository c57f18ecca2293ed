//! The configuration file: a raw serde shape that rejects unknown keys,
//! turned into a validated [`Config`]. Every error names the file, the line
//! and what to change.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::clock;
use crate::plugin::{Grant, Origin, PluginLimits};
use crate::trust::{TrustAnchor, TrustAnchors};

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let upto = &text[..offset.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    identity: Vec<RawPlugin>,
    #[serde(default)]
    connector: Vec<RawPlugin>,
    #[serde(default)]
    trust_anchor: Vec<RawAnchor>,
    policy: RawPolicy,
    #[serde(default)]
    listener: Vec<RawListener>,
    #[serde(default)]
    identity_cache: IdentityCacheConfig,
    admin: Option<RawAdmin>,
    #[serde(default)]
    runtime: RuntimeConfig,
}

/// How the process runs its async work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads for request handling; 1 runs everything on one
    /// thread (the fastest shape on small machines where the proxy shares
    /// cores with its callers), unset means one per CPU.
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    bind: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "default_audit_output")]
    output: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            output: default_audit_output(),
        }
    }
}

fn default_audit_output() -> String {
    "stdout".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: Spanned<String>,
    plugin: Spanned<String>,
    #[serde(default)]
    outbound: Vec<RawGrant>,
    #[serde(default)]
    config: toml::Table,
    limits: Option<Spanned<PluginLimits>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    origin: Spanned<String>,
    #[serde(default)]
    private: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnchor {
    id: String,
    provider: Spanned<String>,
    reviewed: Spanned<String>,
    max_age_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    policies: Vec<Spanned<String>>,
    #[serde(default)]
    schema_files: Vec<Spanned<String>>,
    #[serde(default = "default_max_age")]
    max_trust_anchor_age_days: i64,
    #[serde(default = "default_true")]
    watch: bool,
}

fn default_max_age() -> i64 {
    30
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Spanned<String>,
    protocol: Spanned<String>,
    bind: Spanned<String>,
    identity: Spanned<String>,
    connector: Spanned<String>,
    credential: CredentialConfig,
    upstream: Spanned<String>,
    upstream_credential: Option<Spanned<RawUpstreamCredential>>,
    tls: Option<RawTls>,
    upstream_connections: Option<Spanned<usize>>,
    upstream_ca: Option<Spanned<String>>,
    max_message_bytes: Option<Spanned<usize>>,
    max_capabilities: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamCredential {
    header: Option<String>,
    value_env: Option<String>,
    value_file: Option<String>,
    #[serde(default)]
    prefix: String,
    google: Option<RawGoogleCredential>,
    aws_token: Option<AwsTokenSettings>,
    google_from_aws: Option<crate::gcp_federation::GcpFederationSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoogleCredential {
    credentials_file: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// Where the caller's credential is, and its scheme.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Header name (default `authorization`).
    #[serde(default = "default_credential_header")]
    pub header: String,
    /// Scheme prefix in the header value, e.g. `Bearer` (case-insensitive).
    /// Empty means the whole value is the credential.
    #[serde(default)]
    pub scheme: String,
    /// Sidecar shape: a file holding this workload's own credential (e.g. a
    /// projected service-account token), used for callers that send none.
    /// Only on listeners bound to a loopback address, where every caller is
    /// the workload itself. Relative to the config file.
    #[serde(default)]
    pub ambient_file: Option<PathBuf>,
    /// Sidecar shape on AWS: mint the task's own token (a signed
    /// `GetCallerIdentity` for this audience) from its ambient AWS
    /// credentials (the ECS task role), for callers that send none.
    /// Loopback listeners only, like `ambient_file`.
    #[serde(default)]
    pub ambient_aws: Option<AwsTokenSettings>,
}

/// How to mint an AWS workload token (see `intentgate token aws`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsTokenSettings {
    /// The verifying deployment's audience (its aws-iam plugin `audience`).
    pub audience: String,
    /// The signed audience header (default `x-intentgate-audience`).
    #[serde(default = "default_aws_audience_header")]
    pub audience_header: String,
    /// STS region (default: from the AWS chain, else us-east-1).
    pub region: Option<String>,
    /// STS host (default `sts.<region>.amazonaws.com`).
    pub sts_host: Option<String>,
}

fn default_aws_audience_header() -> String {
    crate::aws_token::DEFAULT_AUDIENCE_HEADER.to_string()
}

impl AwsTokenSettings {
    /// The minter's config.
    pub fn minter_config(&self) -> crate::aws_token::AwsTokenConfig {
        crate::aws_token::AwsTokenConfig {
            audience: self.audience.clone(),
            audience_header: self.audience_header.clone(),
            region: self.region.clone(),
            sts_host: self.sts_host.clone(),
        }
    }
}

fn default_credential_header() -> String {
    "authorization".into()
}

/// Bounds of the verified-identity cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityCacheConfig {
    /// Most identities kept (default 100,000).
    pub max_entries: usize,
}

impl Default for IdentityCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
        }
    }
}

/// A validated plugin entry.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Instance name.
    pub name: String,
    /// Resolved `.wasm` path.
    pub path: PathBuf,
    /// The plugin's config as JSON text.
    pub config_json: String,
    /// Outbound grants.
    pub grants: Vec<Grant>,
    /// Limits.
    pub limits: PluginLimits,
}

/// The upstream credential the host injects.
#[derive(Debug, Clone)]
pub enum UpstreamCredential {
    /// A fixed secret (tests, emulators, API keys).
    Static {
        /// Header to set.
        header: http::HeaderName,
        /// Where the value comes from.
        source: CredentialSource,
        /// Text put before the value (e.g. `Bearer `).
        prefix: String,
    },
    /// A fresh AWS workload token for this task, sent as
    /// `authorization: Bearer <token>` (a sidecar forwarding to a gateway).
    AwsToken(AwsTokenSettings),
    /// Google credentials: application default credentials, or a
    /// credentials file (service account, workload identity federation).
    Google {
        /// A credentials JSON file; `None` means ADC discovery.
        credentials_file: Option<PathBuf>,
        /// OAuth scopes; empty means Spanner data access.
        scopes: Vec<String>,
    },
    /// Google access tokens by workload identity federation from this
    /// task's AWS credentials (signed subject token, STS exchange, optional
    /// service-account impersonation).
    GoogleFromAws(crate::gcp_federation::GcpFederationSettings),
}

/// Where an upstream secret is read from; the secret itself never sits in
/// the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// An environment variable, read at start.
    Env(String),
    /// A file, read at start.
    File(PathBuf),
}

/// Listener TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 reverse proxy.
    Http,
    /// gRPC over HTTP/2, forwarded as raw bytes.
    Grpc,
}

/// gRPC listener settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcListenerConfig {
    /// HTTP/2 connections to the upstream (calls are spread over them).
    pub upstream_connections: usize,
    /// Extra CA (PEM) trusted for an `https://` upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Largest request message accepted.
    pub max_message_bytes: usize,
    /// Most capabilities (e.g. sessions) remembered; beyond that, upstream
    /// is asked again.
    pub max_capabilities: usize,
}

/// Default gRPC upstream connections: Spanner suggests a channel per 100
/// concurrent calls.
pub const DEFAULT_UPSTREAM_CONNECTIONS: usize = 4;
/// Default largest gRPC request message: 4 MiB, gRPC's own default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Default capability cache size.
pub const DEFAULT_MAX_CAPABILITIES: usize = 100_000;

/// A validated listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// What it speaks.
    pub protocol: Protocol,
    /// gRPC settings (`protocol = "grpc"` only).
    pub grpc: Option<GrpcListenerConfig>,
    /// Name, used in audit records and `context.gate.listener`.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Identity provider instance name.
    pub identity: String,
    /// Connector instance name.
    pub connector: String,
    /// Credential location.
    pub credential: CredentialConfig,
    /// Upstream base URL.
    pub upstream: http::Uri,
    /// Upstream credential.
    pub upstream_credential: Option<UpstreamCredential>,
    /// TLS, when the listener terminates it.
    pub tls: Option<TlsFiles>,
}

/// Policy sources and settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Policy files and folders, resolved.
    pub policies: Vec<PathBuf>,
    /// Extra schema fragment files, resolved.
    pub schema_files: Vec<PathBuf>,
    /// Whether to reload on file changes.
    pub watch: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `stdout` or a file path.
    pub audit_output: String,
    /// Identity providers.
    pub identities: Vec<PluginConfig>,
    /// Connectors.
    pub connectors: Vec<PluginConfig>,
    /// Trust anchors.
    pub trust: TrustAnchors,
    /// Policy settings.
    pub policy: PolicyConfig,
    /// Listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Identity cache bounds.
    pub identity_cache: IdentityCacheConfig,
    /// Where `/healthz` and `/readyz` are served, if anywhere.
    pub admin_bind: Option<SocketAddr>,
    /// Async runtime settings.
    pub runtime: RuntimeConfig,
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        });
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths in it are relative
    /// to the file's folder.
    ///
    /// # Errors
    /// Every problem found, each with its line.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read the config file: {e}"),
            }]
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text as if it were read from `path`.
    ///
    /// # Errors
    /// Every problem found, each with its line.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Vec<ConfigError>> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
            vec![ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end_matches('\n').to_string(),
            }]
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut check = Checker {
            file: path,
            text,
            errors: Vec::new(),
        };
        let identities = plugins(&mut check, &dir, raw.identity, "identity");
        let connectors = plugins(&mut check, &dir, raw.connector, "connector");
        if raw.policy.max_trust_anchor_age_days < 1 {
            check.errors.push(ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: "`policy.max_trust_anchor_age_days` must be at least 1".into(),
            });
        }
        let mut anchors = Vec::new();
        for a in raw.trust_anchor {
            if !identities.iter().any(|p| p.name == *a.provider.get_ref()) {
                check.at(
                    a.provider.span(),
                    format!(
                        "trust anchor names identity provider `{}`, which is not configured",
                        a.provider.get_ref()
                    ),
                );
            }
            match clock::parse_date(a.reviewed.get_ref()) {
                Ok(day) if day > (clock::now_unix() / 86_400) as i64 + 1 => {
                    check.at(
                        a.reviewed.span(),
                        format!("review date `{}` is in the future", a.reviewed.get_ref()),
                    );
                }
                Ok(day) => anchors.push(TrustAnchor {
                    provider: a.provider.into_inner(),
                    id: a.id,
                    reviewed_day: day,
                    max_age_days: a
                        .max_age_days
                        .unwrap_or(raw.policy.max_trust_anchor_age_days),
                }),
                Err(e) => check.at(a.reviewed.span(), e),
            }
        }
        let policy = PolicyConfig {
            policies: raw
                .policy
                .policies
                .iter()
                .map(|p| dir.join(p.get_ref()))
                .collect(),
            schema_files: raw
                .policy
                .schema_files
                .iter()
                .map(|p| dir.join(p.get_ref()))
                .collect(),
            watch: raw.policy.watch,
        };
        for (spanned, resolved) in raw.policy.policies.iter().zip(&policy.policies) {
            if !resolved.exists() {
                check.at(
                    spanned.span(),
                    format!("policy path `{}` does not exist", resolved.display()),
                );
            }
        }
        if raw.policy.policies.is_empty() {
            check.errors.push(ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: "`policy.policies` is empty: with no policies every request is denied; list at least one file or folder".into(),
            });
        }
        let mut listeners = Vec::new();
        let mut names = Vec::new();
        for l in raw.listener {
            if names.contains(l.name.get_ref()) {
                check.at(
                    l.name.span(),
                    format!("listener `{}` is defined twice", l.name.get_ref()),
                );
            }
            names.push(l.name.get_ref().clone());
            if let Some(listener) = listener(&mut check, &dir, l, &identities, &connectors) {
                listeners.push(listener);
            }
        }
        let admin_bind = raw
            .admin
            .and_then(|a| match a.bind.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    check.at(
                        a.bind.span(),
                        format!("`{}` is not an address:port to bind: {e}", a.bind.get_ref()),
                    );
                    None
                }
            });
        if raw.runtime.worker_threads == Some(0) {
            check.errors.push(ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: "`runtime.worker_threads` must be at least 1 (or unset for one per CPU)"
                    .into(),
            });
        }
        if !check.errors.is_empty() {
            return Err(check.errors);
        }
        Ok(Config {
            admin_bind,
            path: path.to_path_buf(),
            audit_output: raw.audit.output,
            identities,
            connectors,
            trust: TrustAnchors::new(anchors),
            policy,
            listeners,
            identity_cache: raw.identity_cache,
            runtime: raw.runtime,
        })
    }
}

fn plugins(
    check: &mut Checker<'_>,
    dir: &Path,
    raw: Vec<RawPlugin>,
    kind: &str,
) -> Vec<PluginConfig> {
    let mut out: Vec<PluginConfig> = Vec::new();
    for p in raw {
        if out.iter().any(|o| o.name == *p.name.get_ref()) {
            check.at(
                p.name.span(),
                format!("{kind} `{}` is defined twice", p.name.get_ref()),
            );
        }
        let mut grants = Vec::new();
        for g in p.outbound {
            match Origin::parse(g.origin.get_ref()) {
                Ok(origin) => grants.push(Grant {
                    origin,
                    private: g.private,
                }),
                Err(e) => check.at(g.origin.span(), e),
            }
        }
        if let Some(limits) = &p.limits
            && let Err(e) = limits.get_ref().validate()
        {
            check.at(limits.span(), e);
        }
        let path = dir.join(p.plugin.get_ref());
        if !path.is_file() {
            check.at(
                p.plugin.span(),
                format!("plugin file `{}` does not exist (build the plugins with scripts/build-plugins)", path.display()),
            );
        }
        let config_json = serde_json::to_string(&p.config).unwrap_or_else(|_| "{}".into());
        out.push(PluginConfig {
            name: p.name.into_inner(),
            path,
            config_json,
            grants,
            limits: p.limits.map(Spanned::into_inner).unwrap_or_default(),
        });
    }
    out
}

fn listener(
    check: &mut Checker<'_>,
    dir: &Path,
    l: RawListener,
    identities: &[PluginConfig],
    connectors: &[PluginConfig],
) -> Option<ListenerConfig> {
    let before = check.errors.len();
    let protocol = match l.protocol.get_ref().as_str() {
        "http" => Protocol::Http,
        "grpc" => Protocol::Grpc,
        other => {
            check.at(
                l.protocol.span(),
                format!("protocol `{other}` is not supported; use `http` or `grpc`"),
            );
            Protocol::Http
        }
    };
    let grpc = grpc_settings(check, dir, &l, protocol);
    let bind = l.bind.get_ref().parse::<SocketAddr>().map_err(|e| {
        check.at(
            l.bind.span(),
            format!("`{}` is not an address:port to bind: {e}", l.bind.get_ref()),
        );
    });
    if !identities.iter().any(|p| p.name == *l.identity.get_ref()) {
        check.at(
            l.identity.span(),
            format!("no [[identity]] named `{}`", l.identity.get_ref()),
        );
    }
    if !connectors.iter().any(|p| p.name == *l.connector.get_ref()) {
        check.at(
            l.connector.span(),
            format!("no [[connector]] named `{}`", l.connector.get_ref()),
        );
    }
    let mut credential = l.credential.clone();
    if credential.ambient_file.is_some() && credential.ambient_aws.is_some() {
        check.at(
            l.bind.span(),
            format!(
                "listener `{}`: `credential` names both `ambient_file` and `ambient_aws`; a workload has one identity, pick one",
                l.name.get_ref()
            ),
        );
    }
    if credential.ambient_aws.is_some() && bind.as_ref().is_ok_and(|b| !b.ip().is_loopback()) {
        check.at(
            l.bind.span(),
            format!(
                "listener `{}`: `credential.ambient_aws` lets callers without a credential act as this task, so the listener must bind a loopback address (127.0.0.1 or ::1), not {}",
                l.name.get_ref(),
                l.bind.get_ref()
            ),
        );
    }
    if let Some(file) = &credential.ambient_file {
        let resolved = dir.join(file);
        if bind.as_ref().is_ok_and(|b| !b.ip().is_loopback()) {
            check.at(
                l.bind.span(),
                format!(
                    "listener `{}`: `credential.ambient_file` lets callers without a credential act as this workload, so the listener must bind a loopback address (127.0.0.1 or ::1), not {}",
                    l.name.get_ref(),
                    l.bind.get_ref()
                ),
            );
        }
        credential.ambient_file = Some(resolved);
    }
    if http::HeaderName::from_bytes(l.credential.header.as_bytes()).is_err() {
        check.errors.push(ConfigError {
            file: check.file.to_path_buf(),
            line: None,
            column: None,
            message: format!(
                "listener `{}`: `{}` is not a header name",
                l.name.get_ref(),
                l.credential.header
            ),
        });
    }
    let upstream = match l.upstream.get_ref().parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Some(uri)
        }
        _ => {
            check.at(
                l.upstream.span(),
                format!(
                    "upstream `{}` is not an http:// or https:// URL",
                    l.upstream.get_ref()
                ),
            );
            None
        }
    };
    let upstream_credential = l
        .upstream_credential
        .and_then(|spanned| upstream_credential(check, dir, spanned));
    let tls = l.tls.map(|t| TlsFiles {
        cert: dir.join(t.cert.get_ref()),
        key: dir.join(t.key.get_ref()),
    });
    if check.errors.len() > before {
        return None;
    }
    Some(ListenerConfig {
        protocol,
        grpc,
        name: l.name.into_inner(),
        bind: bind.ok()?,
        identity: l.identity.into_inner(),
        connector: l.connector.into_inner(),
        credential,
        upstream: upstream?,
        upstream_credential,
        tls,
    })
}

/// `{ header, value_env | value_file, prefix }` or `{ google = { credentials_file?, scopes? } }`.
fn upstream_credential(
    check: &mut Checker<'_>,
    dir: &Path,
    spanned: Spanned<RawUpstreamCredential>,
) -> Option<UpstreamCredential> {
    let span = spanned.span();
    let c = spanned.into_inner();
    let kinds = usize::from(c.google.is_some())
        + usize::from(c.aws_token.is_some())
        + usize::from(c.google_from_aws.is_some())
        + usize::from(c.header.is_some() || c.value_env.is_some() || c.value_file.is_some());
    if kinds > 1 {
        check.at(
            span,
            "upstream_credential is one of `{ header, value_env | value_file, prefix }`, `{ google = { ... } }`, `{ google_from_aws = { audience, ... } }` or `{ aws_token = { audience, ... } }`, not several",
        );
        return None;
    }
    if let Some(federation) = c.google_from_aws {
        if !c.prefix.is_empty() {
            check.at(
                span,
                "upstream_credential `prefix` applies to `header` only",
            );
            return None;
        }
        if let Err(e) = federation.check() {
            check.at(span, format!("upstream_credential.google_from_aws: {e}"));
            return None;
        }
        return Some(UpstreamCredential::GoogleFromAws(federation));
    }
    if let Some(aws) = c.aws_token {
        return Some(UpstreamCredential::AwsToken(aws));
    }
    if let Some(google) = c.google {
        if c.header.is_some()
            || c.value_env.is_some()
            || c.value_file.is_some()
            || !c.prefix.is_empty()
        {
            check.at(
                span,
                "upstream_credential is either `{ google = { ... } }` or `{ header, value_env | value_file, prefix }`, not both",
            );
            return None;
        }
        let credentials_file = google.credentials_file.map(|f| dir.join(f));
        if let Some(file) = &credentials_file
            && !file.is_file()
        {
            check.at(
                span,
                format!(
                    "Google credentials file `{}` does not exist",
                    file.display()
                ),
            );
            return None;
        }
        return Some(UpstreamCredential::Google {
            credentials_file,
            scopes: google.scopes,
        });
    }
    let Some(header) = c.header else {
        check.at(
            span,
            "upstream_credential needs `header` (with `value_env` or `value_file`), or `google = {}` for Google credentials",
        );
        return None;
    };
    let Ok(header) = http::HeaderName::from_bytes(header.as_bytes()) else {
        check.at(span, format!("`{header}` is not a header name"));
        return None;
    };
    let source = match (c.value_env, c.value_file) {
        (Some(env), None) => CredentialSource::Env(env),
        (None, Some(file)) => CredentialSource::File(dir.join(file)),
        _ => {
            check.at(
                span,
                "upstream_credential needs exactly one of `value_env` or `value_file`",
            );
            return None;
        }
    };
    Some(UpstreamCredential::Static {
        header,
        source,
        prefix: c.prefix,
    })
}

/// The gRPC-only keys: checked for range on gRPC listeners, refused on
/// others so a misplaced key is not silently ignored.
fn grpc_settings(
    check: &mut Checker<'_>,
    dir: &Path,
    l: &RawListener,
    protocol: Protocol,
) -> Option<GrpcListenerConfig> {
    let keys = [
        (
            "upstream_connections",
            l.upstream_connections.as_ref().map(Spanned::span),
        ),
        ("upstream_ca", l.upstream_ca.as_ref().map(Spanned::span)),
        (
            "max_message_bytes",
            l.max_message_bytes.as_ref().map(Spanned::span),
        ),
        (
            "max_capabilities",
            l.max_capabilities.as_ref().map(Spanned::span),
        ),
    ];
    if protocol != Protocol::Grpc {
        for (key, span) in keys {
            if let Some(span) = span {
                check.at(
                    span,
                    format!("`{key}` applies to `protocol = \"grpc\"` listeners only"),
                );
            }
        }
        return None;
    }
    let mut ranged = |value: &Option<Spanned<usize>>,
                      key: &str,
                      default: usize,
                      range: std::ops::RangeInclusive<usize>| {
        match value {
            None => default,
            Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                check.at(
                    v.span(),
                    format!("`{key}` must be within {}..={}", range.start(), range.end()),
                );
                default
            }
        }
    };
    let upstream_connections = ranged(
        &l.upstream_connections,
        "upstream_connections",
        DEFAULT_UPSTREAM_CONNECTIONS,
        1..=64,
    );
    let max_message_bytes = ranged(
        &l.max_message_bytes,
        "max_message_bytes",
        DEFAULT_MAX_MESSAGE_BYTES,
        1..=(64 << 20),
    );
    let max_capabilities = ranged(
        &l.max_capabilities,
        "max_capabilities",
        DEFAULT_MAX_CAPABILITIES,
        16..=10_000_000,
    );
    let upstream_ca = l.upstream_ca.as_ref().map(|ca| {
        let path = dir.join(ca.get_ref());
        if !path.is_file() {
            check.at(
                ca.span(),
                format!("upstream CA file `{}` does not exist", path.display()),
            );
        }
        path
    });
    if let Ok(uri) = l.upstream.get_ref().parse::<http::Uri>()
        && !matches!(uri.path(), "" | "/")
    {
        check.at(
            l.upstream.span(),
            "a gRPC upstream is a scheme and an address only (`http://host:port` for h2c, `https://host:port` for TLS); gRPC paths name the method",
        );
    }
    Some(GrpcListenerConfig {
        upstream_connections,
        upstream_ca,
        max_message_bytes,
        max_capabilities,
    })
}

#[cfg(test)]
mod tests;
