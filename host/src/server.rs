//! Assembles a running intentgate from a [`Config`]: plugins, policies,
//! gates and listeners; then watches for reloads and shuts down gracefully.
//! `check`, `explain` and `policy test` share [`Assembly`] with `run`, so
//! they see exactly what the proxy would.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::audit::{AuditOutput, AuditSink};
use crate::aws_token::AwsTokenMinter;
use crate::capability::CapabilityCache;
use crate::config::{Config, CredentialSource, ListenerConfig, Protocol, UpstreamCredential};
use crate::gate::Gate;
use crate::identity_cache::IdentityCache;
use crate::listener;
use crate::listener::admin::Phase;
use crate::metrics::Gauge;
use crate::plugin::{ConnectorPlugin, IdentityPlugin, PluginRuntime, PluginSpec};
use crate::policy::{self, LoadedPolicies, PolicyEngine, PolicySources, SchemaFragmentSource};
use crate::trust::TrustAnchors;
use crate::upstream_auth::{AwsUpstream, GoogleAuth, UpstreamAuth};

/// Plugins and policies loaded from a config.
pub struct Assembly {
    /// The runtime the plugins live in.
    pub runtime: PluginRuntime,
    /// Identity providers by instance name.
    pub identities: HashMap<String, Arc<IdentityPlugin>>,
    /// Connectors by instance name.
    pub connectors: HashMap<String, Arc<ConnectorPlugin>>,
    /// The inputs of the policy set (for reloads).
    pub sources: PolicySources,
    /// The validated policy set.
    pub policies: LoadedPolicies,
}

fn spec(p: &crate::config::PluginConfig) -> PluginSpec {
    PluginSpec {
        name: p.name.clone(),
        path: p.path.clone(),
        config_json: p.config_json.clone(),
        grants: p.grants.clone(),
        limits: p.limits.clone(),
    }
}

impl Assembly {
    /// Loads every plugin and the policy set.
    ///
    /// # Errors
    /// Every problem found, as printable lines (with file and line where known).
    pub async fn load(config: &Config) -> Result<Self, Vec<String>> {
        let runtime = PluginRuntime::new().map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let mut identities = HashMap::new();
        for p in &config.identities {
            match runtime.load_identity(&spec(p)).await {
                Ok(plugin) => {
                    identities.insert(p.name.clone(), Arc::new(plugin));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut connectors = HashMap::new();
        for p in &config.connectors {
            match runtime.load_connector(&spec(p)).await {
                Ok(plugin) => {
                    connectors.insert(p.name.clone(), Arc::new(plugin));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sources = policy_sources(config, &identities, &connectors)?;
        let policies = policy::load(&sources)
            .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        Ok(Self {
            runtime,
            identities,
            connectors,
            sources,
            policies,
        })
    }
}

/// Reads schema files and lists policy files, in a stable order.
///
/// # Errors
/// Files that cannot be read.
pub fn policy_sources(
    config: &Config,
    identities: &HashMap<String, Arc<IdentityPlugin>>,
    connectors: &HashMap<String, Arc<ConnectorPlugin>>,
) -> Result<PolicySources, Vec<String>> {
    let mut errors = Vec::new();
    let mut fragments = Vec::new();
    let mut principal_types = Vec::new();
    let mut names: Vec<&String> = identities.keys().collect();
    names.sort();
    for name in names {
        let plugin = &identities[name];
        fragments.push(SchemaFragmentSource {
            origin: format!("plugin `{name}`"),
            text: plugin.info().schema.clone(),
        });
        for t in plugin.principal_types() {
            if !principal_types.contains(t) {
                principal_types.push(t.clone());
            }
        }
    }
    let mut names: Vec<&String> = connectors.keys().collect();
    names.sort();
    for name in names {
        fragments.push(SchemaFragmentSource {
            origin: format!("plugin `{name}`"),
            text: connectors[name].info().schema.clone(),
        });
    }
    for path in &config.policy.schema_files {
        match std::fs::read_to_string(path) {
            Ok(text) => fragments.push(SchemaFragmentSource {
                origin: path.display().to_string(),
                text,
            }),
            Err(e) => errors.push(format!("{}: cannot read schema file: {e}", path.display())),
        }
    }
    let mut policy_files = Vec::new();
    for path in &config.policy.policies {
        if path.is_dir() {
            match policy::policy_files_in(path) {
                Ok(files) => policy_files.extend(files),
                Err(e) => errors.push(format!(
                    "{}: cannot list policy folder: {e}",
                    path.display()
                )),
            }
        } else {
            policy_files.push(path.clone());
        }
    }
    if errors.is_empty() {
        Ok(PolicySources {
            fragments,
            principal_types,
            policy_files,
        })
    } else {
        Err(errors)
    }
}

/// Sets up the credential a listener sends upstream: a fixed secret, or
/// Google credentials (the first token is fetched here, so a broken setup
/// fails at start, not on the first call).
///
/// # Errors
/// A missing secret, or Google credentials that yield no token.
pub async fn upstream_auth(listener: &ListenerConfig) -> Result<UpstreamAuth, String> {
    match &listener.upstream_credential {
        None => Ok(UpstreamAuth::None),
        Some(UpstreamCredential::Static { .. }) => {
            Ok(UpstreamAuth::from(static_upstream_credential(listener)?))
        }
        Some(UpstreamCredential::AwsToken(settings)) => {
            let minter = AwsTokenMinter::from_environment(settings.minter_config())
                .await
                .map_err(|e| format!("listener `{}`: upstream AWS token: {e}", listener.name))?;
            let aws = AwsUpstream::start(Arc::new(minter))
                .await
                .map_err(|e| format!("listener `{}`: upstream AWS token: {e}", listener.name))?;
            let auth = UpstreamAuth::Aws(aws);
            tracing::info!(listener = %listener.name, credentials = %auth.describe(), "upstream AWS token ready");
            Ok(auth)
        }
        Some(UpstreamCredential::Google {
            credentials_file,
            scopes,
        }) => {
            let auth = match credentials_file {
                Some(file) => GoogleAuth::from_file(file, scopes).await,
                None => GoogleAuth::start(scopes).await,
            }
            .map_err(|e| format!("listener `{}`: {e}", listener.name))?;
            tracing::info!(listener = %listener.name, credentials = %auth.describe(), "upstream Google credentials ready");
            Ok(UpstreamAuth::Google(auth))
        }
        Some(UpstreamCredential::GoogleFromAws(settings)) => {
            let auth = GoogleAuth::from_aws(settings)
                .await
                .map_err(|e| format!("listener `{}`: {e}", listener.name))?;
            tracing::info!(listener = %listener.name, credentials = %auth.describe(), "upstream Google credentials (from AWS) ready");
            Ok(UpstreamAuth::Google(auth))
        }
    }
}

/// The workload's own credential for callers that send none (sidecars).
///
/// # Errors
/// When the task's AWS token cannot be minted at start.
pub async fn ambient_credential(
    listener: &ListenerConfig,
) -> Result<Option<crate::ambient::AmbientCredential>, String> {
    if let Some(file) = &listener.credential.ambient_file {
        return Ok(Some(crate::ambient::AmbientCredential::file(file)));
    }
    let Some(settings) = &listener.credential.ambient_aws else {
        return Ok(None);
    };
    let minter = AwsTokenMinter::from_environment(settings.minter_config())
        .await
        .map_err(|e| {
            format!(
                "listener `{}`: the task's own AWS token: {e}",
                listener.name
            )
        })?;
    tracing::info!(listener = %listener.name, audience = %minter.audience(), sts_host = %minter.sts_host(), "loopback callers without a credential act as this task");
    Ok(Some(crate::ambient::AmbientCredential::Aws(Arc::new(
        minter,
    ))))
}

/// Reads a listener's fixed upstream secret (`None` for other kinds).
///
/// # Errors
/// When the variable or file is missing or not a valid header value.
pub fn static_upstream_credential(
    listener: &ListenerConfig,
) -> Result<Option<(HeaderName, HeaderValue)>, String> {
    let Some(UpstreamCredential::Static {
        header,
        source,
        prefix,
    }) = &listener.upstream_credential
    else {
        return Ok(None);
    };
    let secret = match source {
        CredentialSource::Env(var) => std::env::var(var)
            .map_err(|_| format!("listener `{}`: environment variable `{var}` for the upstream credential is not set", listener.name))?,
        CredentialSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("listener `{}`: cannot read upstream credential file `{}`: {e}", listener.name, path.display()))?
            .trim()
            .to_string(),
    };
    let mut value = HeaderValue::from_str(&format!("{prefix}{secret}")).map_err(|_| {
        format!(
            "listener `{}`: the upstream credential is not a valid header value",
            listener.name
        )
    })?;
    value.set_sensitive(true);
    Ok(Some((header.clone(), value)))
}

/// The signals intentgate acts on, installed first thing in [`run`]: from
/// then on no signal meets its default action (which, for SIGHUP, is to end
/// the process), start-up included.
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch {name}");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
            hup: install(SignalKind::hangup(), "SIGHUP; it will end the process"),
        }
    }

    /// Waits for SIGTERM or SIGINT.
    async fn shutdown(&mut self) {
        if self.term.is_none() && self.int.is_none() {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
        tokio::select! {
            () = next(&mut self.term) => {}
            () = next(&mut self.int) => {}
        }
    }
}

/// The next delivery of `signal`; never, when it is not watched.
async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Whether `signal` was delivered and not yet received (consumes it).
async fn delivered(signal: &mut Option<Signal>) -> bool {
    let Some(s) = signal.as_mut() else {
        return false;
    };
    tokio::select! {
        biased;
        Some(()) = s.recv() => true,
        () = std::future::ready(()) => false,
    }
}

/// What a started proxy is made of.
struct Running {
    servers: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    ready: Arc<listener::admin::Readiness>,
    audit: AuditSink,
    audit_task: tokio::task::JoinHandle<()>,
    engine: Arc<PolicyEngine>,
    trust: Arc<ArcSwap<TrustAnchors>>,
    identities: HashMap<String, Arc<IdentityPlugin>>,
    connectors: HashMap<String, Arc<ConnectorPlugin>>,
    /// The policy files' fingerprint from before they were loaded.
    loaded: Fingerprint,
    /// The plugins' runtime: it owns the epoch ticker that enforces their CPU
    /// budgets, so it must live as long as the plugins serve.
    runtime: PluginRuntime,
}

/// Runs the proxy until SIGINT or SIGTERM, then drains (see
/// [`listener::serve`]) and returns once the calls in flight are done and
/// their audit records written.
///
/// Signals are watched before anything else: SIGTERM or SIGINT during
/// start-up ends it (`Ok`, nothing is in flight yet); a SIGHUP during
/// start-up is remembered and applied (one reload) once the proxy serves.
///
/// # Errors
/// Start-up failures, as printable lines.
pub async fn run(config: Config) -> Result<(), Vec<String>> {
    let mut signals = Signals::install();
    tracing::info!(config = %config.path.display(), "starting");
    let running = tokio::select! {
        running = start(&config) => running?,
        () = signals.shutdown() => {
            tracing::info!("shutdown requested during start-up; exiting");
            return Ok(());
        }
    };
    let Running {
        servers,
        stop,
        ready,
        audit,
        audit_task,
        engine,
        trust,
        identities,
        connectors,
        loaded,
        runtime,
    } = running;
    let reload_now = delivered(&mut signals.hup).await;
    if reload_now {
        tracing::info!("a SIGHUP arrived during start-up; reloading now that intentgate serves");
    }
    let reloader = tokio::spawn(watch_for_reloads(
        config.clone(),
        identities,
        connectors,
        engine.clone(),
        trust,
        Triggers {
            hup: signals.hup.take(),
            loaded,
            reload_now,
        },
    ));
    tracing::info!(
        policies = engine.current().policy_count(),
        "intentgate ready"
    );
    ready.set(Phase::Serving);
    signals.shutdown().await;
    ready.set(Phase::Draining);
    tracing::info!(
        timeout_secs = listener::DRAIN_TIMEOUT.as_secs(),
        "shutting down: /readyz answers 503, listeners closed, draining the calls in flight"
    );
    // The reload handler stays installed (a SIGHUP while draining is
    // ignored); only its task ends.
    reloader.abort();
    let _ = stop.send(true);
    for server in servers {
        let _ = server.await;
    }
    drop(audit);
    let _ = audit_task.await;
    tracing::info!("drained; exiting");
    drop(runtime);
    // The admin listener is not awaited: it serves until the process exits.
    Ok(())
}

/// What `/metrics` reads when scraped.
struct GaugeSources {
    cache: Arc<IdentityCache>,
    providers: Vec<String>,
    trust: Arc<ArcSwap<TrustAnchors>>,
    /// Filled in as listeners are set up.
    listeners: std::sync::Mutex<Vec<ListenerGauges>>,
}

/// A gRPC listener's gauges.
struct ListenerGauges {
    name: String,
    capabilities: Arc<CapabilityCache>,
    upstream: Arc<listener::grpc::Upstream>,
}

impl GaugeSources {
    fn gauges(&self) -> Vec<Gauge> {
        let mut out = Vec::new();
        let held = self.cache.entries_by_provider();
        for provider in &self.providers {
            out.push(Gauge {
                name: "intentgate_identity_cache_entries",
                help: "Verified identities held in the identity cache, by identity provider.",
                labels: vec![("provider", provider.clone())],
                value: held.get(provider).copied().unwrap_or(0) as f64,
            });
        }
        if let Ok(listeners) = self.listeners.lock() {
            for l in listeners.iter() {
                out.push(Gauge {
                    name: "intentgate_capability_cache_entries",
                    help: "Capabilities (Spanner sessions) and their bound roles held, by gRPC listener.",
                    labels: vec![("listener", l.name.clone())],
                    value: l.capabilities.len() as f64,
                });
                out.push(Gauge {
                    name: "intentgate_upstream_connections_open",
                    help: "Upstream HTTP/2 connections open now, by gRPC listener.",
                    labels: vec![("listener", l.name.clone())],
                    value: l.upstream.stats().open as f64,
                });
            }
        }
        let now = crate::clock::now_unix();
        let today = (now / 86_400) as i64;
        let trust = self.trust.load();
        for (anchor, _) in trust.expiring(now, i64::MAX) {
            let labels = vec![
                ("provider", anchor.provider.clone()),
                ("anchor", anchor.id.clone()),
            ];
            out.push(Gauge {
                name: "intentgate_trust_anchor_age_days",
                help: "Whole UTC days since the trust anchor's last review (`reviewed`).",
                labels: labels.clone(),
                value: (today - anchor.reviewed_day) as f64,
            });
            out.push(Gauge {
                name: "intentgate_trust_anchor_max_age_days",
                help: "The age in days past which the trust anchor authenticates no one.",
                labels,
                value: anchor.max_age_days as f64,
            });
        }
        out
    }
}

/// Loads plugins and policies, opens the audit output, binds the admin
/// listener and every proxy listener, and starts serving them.
async fn start(config: &Config) -> Result<Running, Vec<String>> {
    let loaded = fingerprint(config);
    let assembly = Assembly::load(config).await?;
    let engine = Arc::new(PolicyEngine::new(assembly.policies));
    let trust = Arc::new(ArcSwap::from_pointee(config.trust.clone()));
    let cache = Arc::new(IdentityCache::new(config.identity_cache.max_entries));
    let base = config.path.parent().map(PathBuf::from).unwrap_or_default();
    let (audit, audit_task) = AuditSink::start(&AuditOutput::parse(&config.audit_output, &base))
        .map_err(|e| vec![format!("cannot open the audit output: {e}")])?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut providers: Vec<String> = assembly.identities.keys().cloned().collect();
    providers.sort();
    let sources = Arc::new(GaugeSources {
        cache: cache.clone(),
        providers,
        trust: trust.clone(),
        listeners: std::sync::Mutex::new(Vec::new()),
    });
    // The admin endpoints come up first: /healthz answers while listeners
    // are still being set up, and /readyz says 503 until they all are. The
    // admin task is not among `servers`: it serves until the process exits,
    // so /readyz can say "draining" while the listeners drain.
    let ready = Arc::new(listener::admin::Readiness::default());
    if let Some(bind) = config.admin_bind {
        let socket = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| vec![format!("admin listener: cannot bind {bind}: {e}")])?;
        tracing::info!(address = %bind, "admin endpoints /healthz, /readyz and /metrics");
        let gauges = sources.clone();
        tokio::spawn(listener::admin::serve(
            socket,
            ready.clone(),
            Arc::new(move || gauges.gauges()),
        ));
    }
    for l in &config.listeners {
        let gate = Gate::new(
            &l.name,
            &l.credential.scheme,
            assembly.identities[&l.identity].clone(),
            assembly.connectors[&l.connector].clone(),
            engine.clone(),
            trust.clone(),
            cache.clone(),
        );
        let tls = match &l.tls {
            Some(files) => {
                Some(listener::tls::acceptor(&files.cert, &files.key).map_err(|e| vec![e])?)
            }
            None => None,
        };
        let header = HeaderName::from_bytes(l.credential.header.as_bytes())
            .map_err(|e| vec![e.to_string()])?;
        let socket = tokio::net::TcpListener::bind(l.bind).await.map_err(|e| {
            vec![format!(
                "listener `{}`: cannot bind {}: {e}",
                l.name, l.bind
            )]
        })?;
        tracing::info!(listener = %l.name, protocol = ?l.protocol, address = %socket.local_addr().map_or(l.bind, |a| a), tls = tls.is_some(), upstream = %l.upstream, "listening");
        let upstream_secret = upstream_auth(l).await.map_err(|e| vec![e])?;
        let served = match (&l.protocol, &l.grpc) {
            (Protocol::Grpc, Some(settings)) => {
                let channels = listener::grpc::Channels::new(
                    &l.name,
                    &l.upstream,
                    settings.upstream_connections,
                    settings.upstream_ca.as_deref(),
                )
                .map_err(|e| vec![format!("listener `{}`: {e}", l.name)])?;
                let upstream = Arc::new(listener::grpc::Upstream::new(channels, upstream_secret));
                let grpc_settings = listener::grpc::GrpcSettings {
                    credential_header: header,
                    credential_scheme: l.credential.scheme.clone(),
                    max_message_bytes: settings.max_message_bytes,
                    tls: tls.is_some(),
                    ambient: ambient_credential(l).await.map_err(|e| vec![e])?,
                };
                let proxy = Arc::new(listener::grpc::GrpcProxy::new(
                    gate,
                    upstream.clone(),
                    grpc_settings,
                    audit.clone(),
                    settings.max_capabilities,
                ));
                let capabilities = proxy.capabilities().clone();
                if let Ok(mut listeners) = sources.listeners.lock() {
                    listeners.push(ListenerGauges {
                        name: l.name.clone(),
                        capabilities,
                        upstream,
                    });
                }
                tokio::spawn(listener::serve(
                    socket,
                    tls,
                    move |req, peer| proxy.clone().handle(req, peer),
                    true,
                    stop_rx.clone(),
                ))
            }
            _ => {
                let proxy = Arc::new(
                    listener::http::HttpProxy::new(
                        gate,
                        header,
                        &l.credential.scheme,
                        l.upstream.clone(),
                        upstream_secret,
                        audit.clone(),
                        tls.is_some(),
                    )
                    .map_err(|e| vec![e])?
                    .with_ambient(ambient_credential(l).await.map_err(|e| vec![e])?),
                );
                tokio::spawn(listener::serve(
                    socket,
                    tls,
                    move |req, peer| proxy.clone().handle(req, peer),
                    false,
                    stop_rx.clone(),
                ))
            }
        };
        servers.push(served);
    }
    Ok(Running {
        servers,
        stop,
        ready,
        audit,
        audit_task,
        engine,
        trust,
        identities: assembly.identities,
        connectors: assembly.connectors,
        loaded,
        runtime: assembly.runtime,
    })
}

/// Paths, sizes and modification times of the policy inputs.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// A cheap fingerprint of the policy inputs: paths, sizes and times.
fn fingerprint(config: &Config) -> Fingerprint {
    let mut files = Vec::new();
    for path in config
        .policy
        .policies
        .iter()
        .chain(&config.policy.schema_files)
    {
        if path.is_dir() {
            files.extend(policy::policy_files_in(path).unwrap_or_default());
        } else {
            files.push(path.clone());
        }
    }
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

/// How often policy files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What starts a reload.
struct Triggers {
    /// SIGHUP, when it could be watched.
    hup: Option<Signal>,
    /// The policy files' fingerprint from before they were loaded.
    loaded: Fingerprint,
    /// A SIGHUP arrived during start-up: reload at once.
    reload_now: bool,
}

/// Reloads policies when their files change (if `policy.watch`) or on
/// SIGHUP; SIGHUP also re-reads the trust anchors from the config file.
/// An invalid new set or config is logged and the last good one stays.
///
/// A policy file changed during start-up is picked up on the first tick
/// (the fingerprint compared against is from before the load), and a
/// SIGHUP that arrived during start-up is applied at once.
async fn watch_for_reloads(
    config: Config,
    identities: HashMap<String, Arc<IdentityPlugin>>,
    connectors: HashMap<String, Arc<ConnectorPlugin>>,
    engine: Arc<PolicyEngine>,
    trust: Arc<ArcSwap<TrustAnchors>>,
    triggers: Triggers,
) {
    let Triggers {
        mut hup,
        loaded,
        reload_now,
    } = triggers;
    let mut last = loaded;
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    let mut pending = reload_now;
    loop {
        let signalled = if std::mem::take(&mut pending) {
            true
        } else {
            tokio::select! {
                _ = ticker.tick() => false,
                () = next(&mut hup) => true,
            }
        };
        if signalled {
            tracing::info!("SIGHUP: reloading the trust anchors and the policies");
        }
        let now = fingerprint(&config);
        if !signalled && (!config.policy.watch || now == last) {
            continue;
        }
        last = now;
        if signalled {
            match Config::load(&config.path) {
                Ok(fresh) => {
                    trust.store(Arc::new(fresh.trust));
                    tracing::info!("trust anchors reloaded");
                }
                Err(errors) => {
                    for e in errors {
                        tracing::error!(error = %e, "config reload failed; keeping the current trust anchors");
                    }
                }
            }
        }
        let sources = match policy_sources(&config, &identities, &connectors) {
            Ok(s) => s,
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %e, "policy reload failed; keeping the current policies");
                }
                continue;
            }
        };
        // Parsing and validating a large set takes a while: keep it off the
        // request workers.
        let reloading = engine.clone();
        let outcome = tokio::task::spawn_blocking(move || reloading.reload(&sources)).await;
        let Ok(outcome) = outcome else {
            tracing::error!("policy reload panicked; keeping the current policies");
            continue;
        };
        match outcome {
            Ok(summary) => tracing::info!(
                policies = summary.policies,
                previous = summary.previous_policies,
                "policies reloaded"
            ),
            Err(diagnostics) => {
                for d in diagnostics {
                    tracing::error!(error = %d, "policy reload failed; keeping the current policies");
                }
            }
        }
    }
}
