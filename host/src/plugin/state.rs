//! The per-call store state and the host side of the plugin imports
//! (`log`, `config`, `outbound-http`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::identity::intentgate::plugin::{config, log, outbound_http, types};
use super::limits::{MAX_LOG_LINE_BYTES, PluginLimits};
use super::outbound::{CacheMode, OutboundClient, OutboundError, OutboundRequest};

/// What every call of one plugin shares.
pub struct PluginShared {
    /// The instance name from the config (e.g. `oidc`).
    pub name: String,
    /// The operator's config for the plugin, as JSON text.
    pub config_json: String,
    /// The plugin's limits.
    pub limits: PluginLimits,
    /// Outbound access, when the plugin's world has it.
    pub outbound: Option<Arc<OutboundClient>>,
    /// Log lines written, across all calls.
    pub logs_written: AtomicU64,
    /// Log lines dropped over the per-call budget, across all calls.
    pub logs_dropped: AtomicU64,
}

/// The state of one store: one call of one plugin.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory, table and instance limits for the store.
    pub limits: StoreLimits,
    shared: Arc<PluginShared>,
    /// Epoch callbacks seen while the guest ran: its CPU time in ticks.
    pub guest_ticks: u64,
    /// When the call must end.
    pub deadline: Instant,
    log_lines: u32,
    /// Log lines dropped over the per-call budget.
    pub logs_dropped: u32,
    outbound_requests: u32,
}

impl CallState {
    /// Fresh state for one call. The WASI context grants nothing: no files,
    /// no environment, no sockets, no inherited stdio.
    pub fn new(shared: Arc<PluginShared>, deadline: Instant) -> Self {
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(shared.limits.memory_bytes())
            .instances(16)
            .tables(16)
            .memories(4)
            .table_elements(20_000)
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
            shared,
            guest_ticks: 0,
            deadline,
            log_lines: 0,
            logs_dropped: 0,
            outbound_requests: 0,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if self.log_lines >= self.shared.limits.log_lines_per_call {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            self.shared.logs_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.log_lines += 1;
        self.shared.logs_written.fetch_add(1, Ordering::Relaxed);
        let text = truncate(&message, MAX_LOG_LINE_BYTES);
        let plugin = self.shared.name.as_str();
        match level {
            log::Level::Debug => tracing::debug!(target: "intentgate::plugin", plugin, "{text}"),
            log::Level::Info => tracing::info!(target: "intentgate::plugin", plugin, "{text}"),
            log::Level::Warn => tracing::warn!(target: "intentgate::plugin", plugin, "{text}"),
            log::Level::Error => tracing::error!(target: "intentgate::plugin", plugin, "{text}"),
        }
        Ok(())
    }
}

impl config::Host for CallState {
    async fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.shared.config_json.clone())
    }
}

impl outbound_http::Host for CallState {
    async fn send(
        &mut self,
        req: outbound_http::Request,
    ) -> wasmtime::Result<Result<outbound_http::Response, outbound_http::HttpError>> {
        use outbound_http::HttpError;
        let Some(client) = self.shared.outbound.clone() else {
            return Ok(Err(HttpError::Denied(
                "this plugin has no outbound access".into(),
            )));
        };
        if self.outbound_requests >= self.shared.limits.outbound_requests_per_call {
            return Ok(Err(HttpError::Denied(format!(
                "over the budget of {} outbound requests per call",
                self.shared.limits.outbound_requests_per_call
            ))));
        }
        self.outbound_requests += 1;
        let cache = match req.cache {
            outbound_http::CacheMode::NoStore => CacheMode::NoStore,
            outbound_http::CacheMode::UseCache => CacheMode::UseCache,
            outbound_http::CacheMode::Refresh => CacheMode::Refresh,
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let request = OutboundRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            cache,
        };
        let answer = client.send(request, remaining).await;
        if let Err(e) = &answer {
            tracing::warn!(target: "intentgate::plugin", plugin = %self.shared.name, error = %e, "outbound request refused or failed");
        }
        Ok(answer
            .map(|r| outbound_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body.to_vec(),
            })
            .map_err(|e| match e {
                OutboundError::Denied(m) => HttpError::Denied(m),
                OutboundError::Invalid(m) => HttpError::Invalid(m),
                OutboundError::Timeout => HttpError::Timeout,
                OutboundError::TooLarge => HttpError::TooLarge,
                OutboundError::Unavailable(m) => HttpError::Unavailable(m),
            }))
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..end], text.len() - end).into()
}
