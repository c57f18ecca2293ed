//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//!
//! One process-wide registry: counters and histograms keyed by a small,
//! bounded set of label values (listener, decision, policy id, plugin,
//! origin). Most request metrics are derived from the audit record, so
//! what the metrics say and what the audit trail says cannot drift apart.
//!
//! Gauges (cache sizes, open upstream connections, trust anchor ages,
//! readiness) are not kept here: the admin listener computes them when
//! `/metrics` is scraped ([`Gauge`], [`Metrics::render_with`]), so the
//! request path never pays for them and they never go stale.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::audit::AuditRecord;

/// Upper bounds (seconds) of the plugin call latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
    0.25,
];

/// Label names and values of one series.
pub type Labels = Vec<(&'static str, String)>;

/// One gauge sample, computed when `/metrics` is scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// The metric name (`intentgate_…`).
    pub name: &'static str,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// Counters of one name, by label set.
#[derive(Default)]
struct Family {
    series: RwLock<BTreeMap<Labels, Arc<AtomicU64>>>,
}

impl Family {
    fn add(&self, labels: Labels, n: u64) {
        if let Ok(series) = self.series.read()
            && let Some(c) = series.get(&labels)
        {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        if let Ok(mut series) = self.series.write() {
            series
                .entry(labels)
                .or_default()
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Vec<(Labels, u64)> {
        self.series.read().map_or_else(
            |_| Vec::new(),
            |s| {
                s.iter()
                    .map(|(l, c)| (l.clone(), c.load(Ordering::Relaxed)))
                    .collect()
            },
        )
    }
}

/// A histogram of one name, by label set.
#[derive(Default)]
struct Histogram {
    series: RwLock<BTreeMap<Labels, Arc<Buckets>>>,
}

#[derive(Default)]
struct Buckets {
    counts: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, labels: Labels, value: Duration) {
        let buckets = match self
            .series
            .read()
            .ok()
            .and_then(|s| s.get(&labels).cloned())
        {
            Some(b) => b,
            None => match self.series.write() {
                Ok(mut s) => s.entry(labels).or_default().clone(),
                Err(_) => return,
            },
        };
        let secs = value.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&buckets.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        buckets.count.fetch_add(1, Ordering::Relaxed);
        buckets
            .sum_nanos
            .fetch_add(value.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    requests: Family,
    policy_decisions: Family,
    retries: Family,
    capability_lookups: Family,
    identity_lookups: Family,
    plugin_outbound: Family,
    upstream_connects: Family,
    plugin_calls: Histogram,
    gauges: RwLock<BTreeMap<(&'static str, Labels), f64>>,
}

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Counts one finished attempt from its audit record.
    pub fn attempt(&self, r: &AuditRecord) {
        let listener = || r.listener.clone();
        self.requests.add(
            vec![
                ("listener", listener()),
                ("protocol", r.protocol.clone()),
                ("decision", r.decision.to_string()),
            ],
            1,
        );
        for policy in &r.policies {
            self.policy_decisions.add(
                vec![
                    ("listener", listener()),
                    ("policy", policy.clone()),
                    ("decision", r.decision.to_string()),
                ],
                1,
            );
        }
        if r.retries > 0 {
            self.retries
                .add(vec![("listener", listener())], u64::from(r.retries));
        }
        if r.capability_lookup {
            self.capability_lookups
                .add(vec![("listener", listener())], 1);
        }
        if let Some(cached) = r.identity_cached {
            let result = if cached { "hit" } else { "miss" };
            self.identity_lookups.add(
                vec![
                    ("provider", r.identity_provider.clone()),
                    ("result", result.to_string()),
                ],
                1,
            );
        }
    }

    /// Times one plugin export call.
    pub fn plugin_call(&self, plugin: &str, export: &'static str, elapsed: Duration, ok: bool) {
        self.plugin_calls.observe(
            vec![
                ("plugin", plugin.to_string()),
                ("export", export.to_string()),
                ("result", if ok { "ok" } else { "error" }.to_string()),
            ],
            elapsed,
        );
    }

    /// Counts a request a plugin sent out of the host (e.g. a call to STS).
    pub fn plugin_outbound(&self, plugin: &str, origin: &str, result: &'static str) {
        self.plugin_outbound.add(
            vec![
                ("plugin", plugin.to_string()),
                ("origin", origin.to_string()),
                ("result", result.to_string()),
            ],
            1,
        );
    }

    /// Counts a new upstream connection.
    pub fn upstream_connect(&self, listener: &str) {
        self.upstream_connects
            .add(vec![("listener", listener.to_string())], 1);
    }

    /// Sets a gauge that stays until set again. Prefer computing gauges at
    /// scrape time ([`Gauge`], [`Self::render_with`]): a stored series
    /// outlives what it measured.
    pub fn gauge(&self, name: &'static str, labels: Labels, value: f64) {
        if let Ok(mut g) = self.gauges.write() {
            g.insert((name, labels), value);
        }
    }

    /// The Prometheus text exposition of what the registry holds.
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// The Prometheus text exposition, with `scraped` gauges (computed by
    /// the caller at scrape time) after the registry's own metrics.
    pub fn render_with(&self, scraped: &[Gauge]) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &Family); 7] = [
            (
                "intentgate_requests_total",
                "Calls by listener, protocol and decision (allow, deny, error).",
                &self.requests,
            ),
            (
                "intentgate_policy_decisions_total",
                "Determining policies of each decision.",
                &self.policy_decisions,
            ),
            (
                "intentgate_upstream_retries_total",
                "Upstream attempts beyond the first.",
                &self.retries,
            ),
            (
                "intentgate_capability_lookups_total",
                "Times upstream was asked what a capability (e.g. a session) is bound to.",
                &self.capability_lookups,
            ),
            (
                "intentgate_identity_lookups_total",
                "Credential verifications by result: hit = served from the identity cache, miss = verified by the identity provider.",
                &self.identity_lookups,
            ),
            (
                "intentgate_plugin_outbound_requests_total",
                "Requests plugins sent out of the host (e.g. STS, JWKS), by origin and result.",
                &self.plugin_outbound,
            ),
            (
                "intentgate_upstream_connections_opened_total",
                "Upstream HTTP/2 connections opened.",
                &self.upstream_connects,
            ),
        ];
        for (name, help, family) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in family.snapshot() {
                let _ = writeln!(out, "{name}{} {value}", render_labels(&labels, None));
            }
        }
        let name = "intentgate_plugin_call_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Plugin export calls, each in a fresh instance.\n# TYPE {name} histogram"
        );
        if let Ok(series) = self.plugin_calls.series.read() {
            for (labels, buckets) in series.iter() {
                for (bound, count) in LATENCY_BUCKETS.iter().zip(&buckets.counts) {
                    let le = format!("{bound}");
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some(&le)),
                        count.load(Ordering::Relaxed)
                    );
                }
                let count = buckets.count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {count}",
                    render_labels(labels, Some("+Inf"))
                );
                let sum = buckets.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                let _ = writeln!(out, "{name}_sum{} {sum}", render_labels(labels, None));
                let _ = writeln!(out, "{name}_count{} {count}", render_labels(labels, None));
            }
        }
        let mut gauges: Vec<Gauge> = scraped.to_vec();
        if let Ok(stored) = self.gauges.read() {
            gauges.extend(stored.iter().map(|((name, labels), value)| Gauge {
                name,
                help: "",
                labels: labels.clone(),
                value: *value,
            }));
        }
        // One family's series must be together; the sort is stable, so each
        // family keeps the order its series were given in.
        gauges.sort_by_key(|g| g.name);
        let mut last = "";
        for g in &gauges {
            if g.name != last {
                if !g.help.is_empty() {
                    let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
                }
                let _ = writeln!(out, "# TYPE {} gauge", g.name);
                last = g.name;
            }
            let _ = writeln!(
                out,
                "{}{} {}",
                g.name,
                render_labels(&g.labels, None),
                g.value
            );
        }
        out
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_become_counters_and_render_as_prometheus_text() {
        let m = Metrics::default();
        let record = AuditRecord {
            listener: "spanner".into(),
            protocol: "grpc".into(),
            decision: "allow",
            policies: vec!["p1".into()],
            identity_provider: "aws".into(),
            identity_cached: Some(false),
            retries: 2,
            ..Default::default()
        };
        m.attempt(&record);
        m.attempt(&AuditRecord {
            identity_cached: Some(true),
            retries: 0,
            ..record
        });
        m.plugin_outbound("aws", "https://sts.amazonaws.com", "sent");
        m.plugin_call("aws", "authenticate", Duration::from_micros(30), true);
        let text = m.render();
        assert!(text.contains(
            "intentgate_requests_total{listener=\"spanner\",protocol=\"grpc\",decision=\"allow\"} 2"
        ), "{text}");
        assert!(text.contains("intentgate_upstream_retries_total{listener=\"spanner\"} 2"));
        assert!(
            text.contains("intentgate_identity_lookups_total{provider=\"aws\",result=\"miss\"} 1")
        );
        assert!(text.contains(
            "intentgate_plugin_call_seconds_bucket{plugin=\"aws\",export=\"authenticate\",result=\"ok\",le=\"0.00005\"} 1"
        ), "{text}");
        assert!(text.contains(
            "intentgate_plugin_call_seconds_bucket{plugin=\"aws\",export=\"authenticate\",result=\"ok\",le=\"0.000025\"} 0"
        ));
    }

    #[test]
    fn scraped_gauges_render_grouped_by_family_with_help() {
        let m = Metrics::default();
        let gauge = |name, labels: Labels, value| Gauge {
            name,
            help: "Help text.",
            labels,
            value,
        };
        let text = m.render_with(&[
            gauge("intentgate_b", vec![("listener", "x".into())], 1.0),
            gauge("intentgate_a", vec![], 0.0),
            gauge("intentgate_b", vec![("listener", "y\"z".into())], 2.5),
        ]);
        let tail: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("intentgate_a"))
            .collect();
        assert_eq!(
            tail,
            [
                "# HELP intentgate_a Help text.",
                "# TYPE intentgate_a gauge",
                "intentgate_a 0",
                "# HELP intentgate_b Help text.",
                "# TYPE intentgate_b gauge",
                "intentgate_b{listener=\"x\"} 1",
                "intentgate_b{listener=\"y\\\"z\"} 2.5",
            ],
            "{text}"
        );
    }
}
