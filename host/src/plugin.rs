//! The plugin runtime: the only module that touches wasmtime.
//!
//! One engine with a pooling allocator; each loaded plugin is compiled once
//! and pre-instantiated; every call gets a fresh store and instance, a CPU
//! budget (epochs), a wall-clock timeout, memory limits, hostcall fuel and a
//! concurrency slot. Any trap, timeout or limit hit is a [`CallError`], which
//! callers turn into a deny.

mod bindings;
mod engine;
pub mod grants;
pub mod headers;
pub mod limits;
pub mod outbound;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::model::{AuthzRequest, EntityRef, Identity};
pub use grants::{Grant, Origin, OutboundAllowList};
pub use limits::PluginLimits;
use state::{CallState, PluginShared};

use bindings::connector::exports::intentgate::plugin::connector as wit_connector;
use bindings::identity::exports::intentgate::plugin::identity_provider as wit_identity;

/// What the operator configured for one plugin instance.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Instance name, unique per kind (`oidc`, `http`).
    pub name: String,
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// The plugin's config, as JSON text.
    pub config_json: String,
    /// Outbound origins the operator grants.
    pub grants: Vec<Grant>,
    /// Sandbox limits.
    pub limits: PluginLimits,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The runtime itself could not start.
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(String),
    /// The file could not be read or compiled.
    #[error("plugin `{name}` ({path}): cannot load the component: {reason}")]
    Component {
        /// Plugin instance name.
        name: String,
        /// Component path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The component does not match the world, or its metadata is refused.
    #[error("plugin `{name}`: {reason}")]
    Refused {
        /// Plugin instance name.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why a plugin call produced no usable answer. Every variant is a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin trapped (panic, unreachable, stack overflow, out of memory).
    #[error("plugin `{plugin}` trapped: {detail}")]
    Trap {
        /// Plugin instance name.
        plugin: String,
        /// The trap.
        detail: String,
    },
    /// The plugin used its CPU budget.
    #[error("plugin `{plugin}` ran past its CPU budget of {cpu_ms} ms")]
    CpuBudget {
        /// Plugin instance name.
        plugin: String,
        /// The budget.
        cpu_ms: u64,
    },
    /// The call ran past its wall-clock timeout.
    #[error("plugin `{plugin}` did not answer within {timeout_ms} ms")]
    Timeout {
        /// Plugin instance name.
        plugin: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// No concurrency slot became free in time.
    #[error("plugin `{plugin}` is at its concurrency limit")]
    Busy {
        /// Plugin instance name.
        plugin: String,
    },
    /// The plugin answered, but its answer breaks the contract.
    #[error("plugin `{plugin}` returned an invalid answer: {detail}")]
    InvalidOutput {
        /// Plugin instance name.
        plugin: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The plugin answered with a refusal (bad credential, malformed call).
    #[error("{kind}: {message}")]
    Refused {
        /// `malformed`, `invalid`, `expired`, `untrusted`, `unavailable`, `unsupported`.
        kind: &'static str,
        /// The plugin's reason.
        message: String,
    },
}

/// Sizes the host accepts from plugins, checked after lifting.
const MAX_JSON_BYTES: usize = 16 << 10;
const MAX_ID_BYTES: usize = 1024;
const MAX_LIST_ITEMS: usize = 64;

/// The runtime: one engine, one linker per plugin kind.
pub struct PluginRuntime {
    engine: Engine,
    ticker: Arc<engine::EpochTicker>,
    identity_linker: Linker<CallState>,
    connector_linker: Linker<CallState>,
    tls: Arc<rustls::ClientConfig>,
}

impl PluginRuntime {
    /// Starts the runtime.
    ///
    /// # Errors
    /// When the engine or the linkers cannot be built.
    pub fn new() -> Result<Self, LoadError> {
        let runtime = |e: wasmtime::Error| LoadError::Runtime(format!("{e:#}"));
        let engine = engine::build().map_err(runtime)?;
        let ticker =
            engine::EpochTicker::start(&engine).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let mut identity_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut identity_linker).map_err(runtime)?;
        bindings::identity::IdentityPlugin::add_to_linker::<_, HasSelf<_>>(
            &mut identity_linker,
            |s| s,
        )
        .map_err(runtime)?;
        let mut connector_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut connector_linker).map_err(runtime)?;
        bindings::connector::ConnectorPlugin::add_to_linker::<_, HasSelf<_>>(
            &mut connector_linker,
            |s| s,
        )
        .map_err(runtime)?;
        Ok(Self {
            engine,
            ticker: Arc::new(ticker),
            identity_linker,
            connector_linker,
            tls: outbound::default_tls(),
        })
    }

    fn compile(&self, spec: &PluginSpec) -> Result<Component, LoadError> {
        spec.limits
            .validate()
            .map_err(|reason| LoadError::Refused {
                name: spec.name.clone(),
                reason,
            })?;
        let component_error = |reason: String| LoadError::Component {
            name: spec.name.clone(),
            path: spec.path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(&spec.path).map_err(|e| component_error(e.to_string()))?;
        Component::new(&self.engine, bytes).map_err(|e| component_error(format!("{e:#}")))
    }

    /// Loads an identity-provider plugin: compiles it, checks it against the
    /// world, reads its metadata and intersects its capabilities with the
    /// grants.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub async fn load_identity(&self, spec: &PluginSpec) -> Result<IdentityPlugin, LoadError> {
        let refused = |reason: String| LoadError::Refused {
            name: spec.name.clone(),
            reason,
        };
        let component = self.compile(spec)?;
        let pre = self
            .identity_linker
            .instantiate_pre(&component)
            .and_then(bindings::identity::IdentityPluginPre::new)
            .map_err(|e| {
                refused(format!(
                    "is not an identity-provider plugin for intentgate:plugin@0.1.0: {e:#}"
                ))
            })?;
        // Ask the plugin about itself in a store with no outbound access.
        let probe = Caller::new(&self.engine, &self.ticker, spec, None);
        let probe_pre = pre.clone();
        let (metadata, config_check, schema, principal_types) = probe
            .call("load", |store| {
                Box::pin(async move {
                    let instance = probe_pre.instantiate_async(&mut *store).await?;
                    let guest = instance.intentgate_plugin_identity_provider();
                    let metadata = guest.call_metadata(&mut *store).await?;
                    let config = guest.call_check_config(&mut *store).await?;
                    let schema = guest.call_cedar_schema(&mut *store).await?;
                    let types = guest.call_principal_types(&mut *store).await?;
                    Ok((metadata, config, schema, types))
                })
            })
            .await
            .map_err(|e| refused(format!("failed while describing itself: {e}")))?;
        config_check.map_err(|e| refused(format!("rejects its config: {e}")))?;
        let allow =
            OutboundAllowList::intersect(&metadata.outbound, &spec.grants).map_err(refused)?;
        let client = Arc::new(outbound::OutboundClient::new(
            &spec.name,
            allow,
            self.tls.clone(),
            spec.limits.outbound_response_bytes,
        ));
        if principal_types.is_empty() {
            return Err(refused("declares no principal types".into()));
        }
        Ok(IdentityPlugin {
            caller: Caller::new(&self.engine, &self.ticker, spec, Some(client)),
            pre,
            info: PluginInfo {
                name: spec.name.clone(),
                version: metadata.version,
                plugin_name: metadata.name,
                schema,
            },
            principal_types,
        })
    }

    /// Loads a connector plugin.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub async fn load_connector(&self, spec: &PluginSpec) -> Result<ConnectorPlugin, LoadError> {
        let refused = |reason: String| LoadError::Refused {
            name: spec.name.clone(),
            reason,
        };
        if !spec.grants.is_empty() {
            return Err(refused(
                "connector plugins get no outbound access; remove its `outbound` grants".into(),
            ));
        }
        let component = self.compile(spec)?;
        let pre = self
            .connector_linker
            .instantiate_pre(&component)
            .and_then(bindings::connector::ConnectorPluginPre::new)
            .map_err(|e| {
                refused(format!(
                    "is not a connector plugin for intentgate:plugin@0.1.0: {e:#}"
                ))
            })?;
        let caller = Caller::new(&self.engine, &self.ticker, spec, None);
        let probe_pre = pre.clone();
        let (metadata, config_check, schema) = caller
            .call("load", |store| {
                Box::pin(async move {
                    let instance = probe_pre.instantiate_async(&mut *store).await?;
                    let guest = instance.intentgate_plugin_connector();
                    let metadata = guest.call_metadata(&mut *store).await?;
                    let config = guest.call_check_config(&mut *store).await?;
                    let schema = guest.call_cedar_schema(&mut *store).await?;
                    Ok((metadata, config, schema))
                })
            })
            .await
            .map_err(|e| refused(format!("failed while describing itself: {e}")))?;
        config_check.map_err(|e| refused(format!("rejects its config: {e}")))?;
        if !metadata.outbound.is_empty() {
            return Err(refused(format!(
                "asks for outbound access ({}), which connector plugins never get",
                metadata.outbound.join(", ")
            )));
        }
        let headers = headers::HeaderFilter::from_declared(metadata.headers).map_err(refused)?;
        Ok(ConnectorPlugin {
            caller,
            pre,
            headers,
            info: PluginInfo {
                name: spec.name.clone(),
                version: metadata.version,
                plugin_name: metadata.name,
                schema,
            },
        })
    }
}

/// What a loaded plugin said about itself.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The instance name from the config.
    pub name: String,
    /// The name the plugin reports.
    pub plugin_name: String,
    /// The version the plugin reports.
    pub version: String,
    /// Its Cedar schema fragment.
    pub schema: String,
}

/// Runs guest calls under the sandbox budget: one fresh store per call.
struct Caller {
    engine: Engine,
    /// Held so the epochs that enforce the CPU budget keep ticking for as
    /// long as this plugin can be called, even if the runtime is dropped.
    _ticker: Arc<engine::EpochTicker>,
    shared: Arc<PluginShared>,
    slots: Arc<Semaphore>,
}

type CallFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// Why the epoch callback stopped the guest, read after the call ends.
const STOP_CPU: u8 = 1;
const STOP_DEADLINE: u8 = 2;

impl Caller {
    fn new(
        engine: &Engine,
        ticker: &Arc<engine::EpochTicker>,
        spec: &PluginSpec,
        outbound: Option<Arc<outbound::OutboundClient>>,
    ) -> Self {
        Self {
            engine: engine.clone(),
            _ticker: ticker.clone(),
            shared: Arc::new(PluginShared {
                name: spec.name.clone(),
                config_json: spec.config_json.clone(),
                limits: spec.limits.clone(),
                outbound,
                logs_written: Default::default(),
                logs_dropped: Default::default(),
            }),
            slots: Arc::new(Semaphore::new(spec.limits.max_concurrency as usize)),
        }
    }

    /// Runs `f` against a fresh store within every limit.
    async fn call<T, F>(&self, export: &'static str, f: F) -> Result<T, CallError>
    where
        F: for<'a> FnOnce(&'a mut Store<CallState>) -> CallFuture<'a, T>,
    {
        let started = Instant::now();
        let result = self.call_inner(f).await;
        crate::metrics::metrics().plugin_call(
            &self.shared.name,
            export,
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    async fn call_inner<T, F>(&self, f: F) -> Result<T, CallError>
    where
        F: for<'a> FnOnce(&'a mut Store<CallState>) -> CallFuture<'a, T>,
    {
        let limits = &self.shared.limits;
        let plugin = || self.shared.name.clone();
        let started = Instant::now();
        let deadline = started + limits.timeout();
        // Queue for a slot for at most a quarter of the budget: a plugin
        // that is saturated for longer than that fails closed.
        let queue_deadline = started + limits.timeout() / 4;
        let _slot = tokio::time::timeout_at(queue_deadline.into(), self.slots.acquire())
            .await
            .map_err(|_| CallError::Busy { plugin: plugin() })?
            .map_err(|_| CallError::Busy { plugin: plugin() })?;
        let mut store = Store::new(&self.engine, CallState::new(self.shared.clone(), deadline));
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(limits.hostcall_bytes);
        let cpu_ticks = limits.cpu_ticks();
        let stop = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let stop_flag = stop.clone();
        store.epoch_deadline_callback(move |mut cx| {
            let state = cx.data_mut();
            state.guest_ticks += 1;
            if state.guest_ticks > cpu_ticks {
                stop_flag.store(STOP_CPU, std::sync::atomic::Ordering::Relaxed);
                return Ok(UpdateDeadline::Interrupt);
            }
            if Instant::now() >= state.deadline {
                stop_flag.store(STOP_DEADLINE, std::sync::atomic::Ordering::Relaxed);
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield to tokio so a busy guest never starves other tasks.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store.set_epoch_deadline(1);
        let outcome = tokio::time::timeout_at(deadline.into(), f(&mut store)).await;
        let dropped = store.data().logs_dropped;
        if dropped > 0 {
            tracing::warn!(plugin = %self.shared.name, dropped, "plugin log lines over the per-call budget were dropped");
        }
        match outcome {
            Err(_) => Err(CallError::Timeout {
                plugin: plugin(),
                timeout_ms: limits.timeout_ms,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(match stop.load(std::sync::atomic::Ordering::Relaxed) {
                STOP_CPU => CallError::CpuBudget {
                    plugin: plugin(),
                    cpu_ms: limits.cpu_ms,
                },
                STOP_DEADLINE => CallError::Timeout {
                    plugin: plugin(),
                    timeout_ms: limits.timeout_ms,
                },
                _ => CallError::Trap {
                    plugin: plugin(),
                    detail: describe_trap(&error),
                },
            }),
        }
    }

    fn invalid(&self, detail: impl Into<String>) -> CallError {
        CallError::InvalidOutput {
            plugin: self.shared.name.clone(),
            detail: detail.into(),
        }
    }
}

fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow (call stack exhausted)".into(),
        Some(trap) => trap.to_string(),
        None => {
            let text = format!("{error:#}");
            state::truncate(&text, 512).into_owned()
        }
    }
}

/// A loaded identity-provider plugin.
pub struct IdentityPlugin {
    caller: Caller,
    pre: bindings::identity::IdentityPluginPre<CallState>,
    info: PluginInfo,
    principal_types: Vec<String>,
}

impl IdentityPlugin {
    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The principal entity types the plugin produces.
    pub fn principal_types(&self) -> &[String] {
        &self.principal_types
    }

    /// `(written, dropped)` log lines across all calls so far.
    pub fn log_counts(&self) -> (u64, u64) {
        let shared = &self.caller.shared;
        (
            shared
                .logs_written
                .load(std::sync::atomic::Ordering::Relaxed),
            shared
                .logs_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// How many outbound requests this plugin's calls actually sent.
    pub fn outbound_sent(&self) -> u64 {
        self.caller
            .shared
            .outbound
            .as_ref()
            .map_or(0, |c| c.sent_count())
    }

    /// Authenticates one credential in a fresh instance.
    ///
    /// # Errors
    /// Any [`CallError`]; the caller must deny.
    pub async fn authenticate(&self, scheme: &str, value: &[u8]) -> Result<Identity, CallError> {
        let credential = wit_identity::Credential {
            scheme: scheme.to_string(),
            value: value.to_vec(),
        };
        let pre = self.pre.clone();
        let answer = self
            .caller
            .call("authenticate", |store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance
                        .intentgate_plugin_identity_provider()
                        .call_authenticate(&mut *store, &credential)
                        .await
                })
            })
            .await?;
        match answer {
            Ok(identity) => self.check_identity(identity),
            Err(e) => Err(match e {
                wit_identity::AuthError::Malformed(m) => CallError::Refused {
                    kind: "malformed",
                    message: m,
                },
                wit_identity::AuthError::Invalid(m) => CallError::Refused {
                    kind: "invalid",
                    message: m,
                },
                wit_identity::AuthError::Expired(m) => CallError::Refused {
                    kind: "expired",
                    message: m,
                },
                wit_identity::AuthError::Untrusted(m) => CallError::Refused {
                    kind: "untrusted",
                    message: m,
                },
                wit_identity::AuthError::Unavailable(m) => CallError::Refused {
                    kind: "unavailable",
                    message: m,
                },
            }),
        }
    }

    /// Re-validates everything the guest returned.
    fn check_identity(&self, identity: wit_identity::Identity) -> Result<Identity, CallError> {
        let c = &self.caller;
        let principal = entity(identity.principal);
        check_entity(c, &principal, "principal")?;
        if !self.principal_types.contains(&principal.type_name) {
            return Err(c.invalid(format!(
                "principal type `{}` is not one it declared",
                principal.type_name
            )));
        }
        if identity.parents.len() > MAX_LIST_ITEMS {
            return Err(c.invalid(format!(
                "{} parents (at most {MAX_LIST_ITEMS})",
                identity.parents.len()
            )));
        }
        let parents: Vec<EntityRef> = identity.parents.into_iter().map(entity).collect();
        for parent in &parents {
            check_entity(c, parent, "parent")?;
        }
        let attributes = json_object(c, &identity.attributes_json, "attributes-json")?;
        if identity.trust_anchor.is_empty() || identity.trust_anchor.len() > MAX_ID_BYTES {
            return Err(c.invalid("trust-anchor is empty or too long"));
        }
        Ok(Identity {
            principal,
            attributes: serde_json::Value::Object(attributes),
            parents,
            expires_at: identity.expires_at,
            trust_anchor: identity.trust_anchor,
            provider: self.info.name.clone(),
        })
    }
}

/// A connector's view of one call.
#[derive(Debug, Clone, Default)]
pub struct CallInput {
    /// `http` or `grpc`.
    pub protocol: String,
    /// HTTP method or full gRPC method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers with credentials removed, lowercase names.
    pub headers: Vec<(String, String)>,
    /// First message bytes.
    pub body: Vec<u8>,
}

/// What a connector made of a call.
#[derive(Debug, Clone)]
pub struct Classification {
    /// The authorization questions; all must be allowed.
    pub requests: Vec<AuthzRequest>,
    /// The annotation naming the backend identity, if the call needs one.
    pub binding_annotation: Option<String>,
    /// Whether to show the connector the first response message.
    pub observe_response: bool,
    /// A capability the call presents (e.g. a session name); the host checks
    /// what it is bound to against the binding annotation.
    pub capability: Option<String>,
    /// Whether the call may be sent again after a failure that reached no one.
    pub replay_safe: bool,
}

/// Most capability grants one response may teach.
pub const MAX_GRANTS: usize = 1000;

/// How to bind an allowed call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// Headers to set upstream.
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove upstream.
    pub remove_headers: Vec<String>,
    /// Bytes to append to the first message.
    pub append_body: Vec<u8>,
}

/// Calls one connector export in a fresh instance, under the sandbox budget.
/// Arguments are owned locals, moved into the call.
macro_rules! connector_call {
    ($plugin:ident, $export:ident($($arg:expr),*)) => {{
        let pre = $plugin.pre.clone();
        $plugin
            .caller
            .call(stringify!($export).trim_start_matches("call_"), |store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance.intentgate_plugin_connector().$export(&mut *store, $($arg),*).await
                })
            })
            .await
    }};
}

/// A loaded connector plugin.
pub struct ConnectorPlugin {
    caller: Caller,
    pre: bindings::connector::ConnectorPluginPre<CallState>,
    /// The request headers its calls are given (what it declared).
    headers: headers::HeaderFilter,
    info: PluginInfo,
}

impl ConnectorPlugin {
    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Classifies a call in a fresh instance.
    ///
    /// # Errors
    /// Any [`CallError`]; the caller must deny.
    pub async fn classify(&self, input: &CallInput) -> Result<Classification, CallError> {
        let call = wit_call(input, &self.headers);
        let answer = connector_call!(self, call_classify(&call))?;
        let c = &self.caller;
        let classification = answer.map_err(connector_refusal)?;
        if classification.requests.is_empty() {
            return Err(c.invalid("a classification with no authorization requests"));
        }
        if classification.requests.len() > MAX_LIST_ITEMS {
            return Err(c.invalid(format!(
                "{} authorization requests (at most {MAX_LIST_ITEMS})",
                classification.requests.len()
            )));
        }
        let mut requests = Vec::with_capacity(classification.requests.len());
        for r in classification.requests {
            let action = entity(r.action);
            let resource = entity(r.resource);
            check_entity(c, &action, "action")?;
            check_entity(c, &resource, "resource")?;
            if r.resource_parents.len() > MAX_LIST_ITEMS {
                return Err(c.invalid("too many resource parents"));
            }
            let resource_parents: Vec<EntityRef> =
                r.resource_parents.into_iter().map(entity).collect();
            for p in &resource_parents {
                check_entity(c, p, "resource parent")?;
            }
            let resource_attributes =
                json_object(c, &r.resource_attributes_json, "resource-attributes-json")?;
            let context = json_object(c, &r.context_json, "context-json")?;
            if context.contains_key("gate") {
                return Err(c.invalid("context-json may not set `gate`; the host sets it"));
            }
            requests.push(AuthzRequest {
                action,
                resource,
                resource_attributes: serde_json::Value::Object(resource_attributes),
                resource_parents,
                context,
            });
        }
        if classification.capability.is_some() && classification.binding_annotation.is_none() {
            return Err(c.invalid(
                "a classification with a capability but no binding-annotation to check it against",
            ));
        }
        if let Some(capability) = &classification.capability
            && (capability.is_empty() || capability.len() > 1024)
        {
            return Err(c.invalid("a capability must be 1..=1024 bytes"));
        }
        Ok(Classification {
            requests,
            binding_annotation: classification.binding_annotation,
            observe_response: classification.observe_response,
            capability: classification.capability,
            replay_safe: classification.replay_safe,
        })
    }

    /// Asks the connector how to bind an allowed call to `binding_value`.
    ///
    /// # Errors
    /// Any [`CallError`]; the caller must deny.
    pub async fn bind(&self, input: &CallInput, binding_value: &str) -> Result<Binding, CallError> {
        let call = wit_call(input, &self.headers);
        let value = binding_value.to_string();
        let answer = connector_call!(self, call_bind(&call, &value))?;
        let binding = answer.map_err(connector_refusal)?;
        Ok(Binding {
            set_headers: binding.set_headers,
            remove_headers: binding.remove_headers,
            append_body: binding.append_body,
        })
    }

    /// Shows the connector the first response message; returns the
    /// capabilities it created or described, each with its bound value.
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn observe(
        &self,
        input: &CallInput,
        response: &[u8],
    ) -> Result<Vec<(String, String)>, CallError> {
        let call = wit_call(input, &self.headers);
        let response = response.to_vec();
        let answer = connector_call!(self, call_observe(&call, &response))?;
        let grants = answer.map_err(connector_refusal)?.grants;
        if grants.len() > MAX_GRANTS {
            return Err(self.caller.invalid(format!(
                "{} capability grants from one response (at most {MAX_GRANTS})",
                grants.len()
            )));
        }
        Ok(grants)
    }

    /// The call that asks upstream what `capability` is bound to.
    ///
    /// # Errors
    /// Any [`CallError`]; the caller must deny.
    pub async fn lookup(&self, capability: &str) -> Result<CallInput, CallError> {
        let capability = capability.to_string();
        let answer = connector_call!(self, call_lookup(&capability))?;
        let call = answer.map_err(connector_refusal)?;
        Ok(CallInput {
            protocol: call.protocol,
            method: call.method,
            path: call.path,
            headers: call.headers,
            body: call.body,
        })
    }
}

fn wit_call(input: &CallInput, headers: &headers::HeaderFilter) -> wit_connector::Call {
    wit_connector::Call {
        protocol: input.protocol.clone(),
        method: input.method.clone(),
        path: input.path.clone(),
        headers: headers.apply(&input.headers),
        body: input.body.clone(),
    }
}

fn connector_refusal(e: wit_connector::ClassifyError) -> CallError {
    match e {
        wit_connector::ClassifyError::Malformed(m) => CallError::Refused {
            kind: "malformed",
            message: m,
        },
        wit_connector::ClassifyError::Unsupported(m) => CallError::Refused {
            kind: "unsupported",
            message: m,
        },
    }
}

fn entity(e: bindings::identity::intentgate::plugin::types::EntityRef) -> EntityRef {
    EntityRef {
        type_name: e.type_name,
        id: e.id,
    }
}

fn check_entity(c: &Caller, e: &EntityRef, what: &str) -> Result<(), CallError> {
    let type_ok = !e.type_name.is_empty()
        && e.type_name.len() <= 256
        && e.type_name.split("::").all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        });
    if !type_ok {
        return Err(c.invalid(format!(
            "{what} type `{}` is not a Cedar type name",
            state::truncate(&e.type_name, 80)
        )));
    }
    if e.id.len() > MAX_ID_BYTES {
        return Err(c.invalid(format!(
            "{what} id is {} bytes (at most {MAX_ID_BYTES})",
            e.id.len()
        )));
    }
    Ok(())
}

fn json_object(
    c: &Caller,
    text: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
    if text.len() > MAX_JSON_BYTES {
        return Err(c.invalid(format!(
            "{what} is {} bytes (at most {MAX_JSON_BYTES})",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(c.invalid(format!("{what} is not a JSON object"))),
        Err(e) => Err(c.invalid(format!("{what} is not JSON: {e}"))),
    }
}

/// Resolves a plugin path relative to the config file's folder.
pub fn resolve_path(config_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    }
}
