//! The sandbox budget every plugin call runs under, with its defaults.
//!
//! Each number is a hard limit: hitting it ends the call, and the call's
//! answer is a deny with the limit named in the audit record.

use std::time::Duration;

/// Per-plugin limits. Operators may tighten or loosen them per plugin in the
/// config (`[identity.limits]`, `[connector.limits]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Guest CPU time per call, in milliseconds (default 100). Time the guest
    /// waits on host calls (outbound HTTP) does not count.
    pub cpu_ms: u64,
    /// Wall-clock time per call including host calls, in milliseconds
    /// (default 3000).
    pub timeout_ms: u64,
    /// Linear memory per instance, in MiB (default 32).
    pub memory_mib: u64,
    /// Bytes the guest may hand the host in one host call or one return
    /// value (default 1 MiB).
    pub hostcall_bytes: usize,
    /// Calls of this plugin running at once (default 64); more wait for a
    /// slot for up to a quarter of `timeout_ms`, then fail closed.
    pub max_concurrency: u32,
    /// Log lines a call may write (default 32); later lines are dropped and
    /// counted.
    pub log_lines_per_call: u32,
    /// Outbound HTTP requests a call may make (default 4).
    pub outbound_requests_per_call: u32,
    /// Largest outbound HTTP response body, in bytes (default 1 MiB).
    pub outbound_response_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            cpu_ms: 100,
            timeout_ms: 3000,
            memory_mib: 32,
            hostcall_bytes: 1 << 20,
            max_concurrency: 64,
            log_lines_per_call: 32,
            outbound_requests_per_call: 4,
            outbound_response_bytes: 1 << 20,
        }
    }
}

/// The most memory any plugin may be given: the pooling allocator reserves
/// slots of this size.
pub const MAX_MEMORY_MIB: u64 = 256;
/// The most concurrent calls across all plugins (pool slots).
pub const MAX_TOTAL_INSTANCES: u32 = 512;
/// How often the epoch ticks; the CPU budget is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Longest log line kept; longer lines are truncated and marked.
pub const MAX_LOG_LINE_BYTES: usize = 1024;

impl PluginLimits {
    /// Checks the limits are inside what the runtime can give.
    ///
    /// # Errors
    /// A message naming the key that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, bool, String); 5] = [
            (
                "cpu_ms",
                self.cpu_ms >= 1 && self.cpu_ms <= 60_000,
                "1..=60000".into(),
            ),
            (
                "timeout_ms",
                self.timeout_ms >= 1 && self.timeout_ms <= 120_000,
                "1..=120000".into(),
            ),
            (
                "memory_mib",
                self.memory_mib >= 1 && self.memory_mib <= MAX_MEMORY_MIB,
                format!("1..={MAX_MEMORY_MIB}"),
            ),
            (
                "max_concurrency",
                self.max_concurrency >= 1 && self.max_concurrency <= MAX_TOTAL_INSTANCES,
                format!("1..={MAX_TOTAL_INSTANCES}"),
            ),
            (
                "hostcall_bytes",
                self.hostcall_bytes >= 1024,
                "at least 1024".into(),
            ),
        ];
        for (key, ok, range) in checks {
            if !ok {
                return Err(format!(
                    "plugin limit `{key}` is out of range (allowed: {range})"
                ));
            }
        }
        Ok(())
    }

    /// The CPU budget in epoch ticks (at least one).
    pub fn cpu_ticks(&self) -> u64 {
        let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
        self.cpu_ms.div_ceil(tick_ms).max(1)
    }

    /// The wall-clock budget.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Linear memory per instance in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }
}
