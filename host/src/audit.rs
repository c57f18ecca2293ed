//! The audit trail: one JSON line per attempt, allowed, denied or failed.
//!
//! Records go through a bounded queue to one writer task; a full queue makes
//! the request wait rather than lose its record. Every string field is
//! capped, and a capped record says so. Credentials never reach a record:
//! the pipeline only ever puts principals, decisions and reasons here.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::mpsc;

/// Longest string kept in a record field.
pub const MAX_FIELD_BYTES: usize = 2048;

/// One attempt.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Always `"audit"`, so records stand out among other log lines.
    pub kind: &'static str,
    /// RFC 3339 time the attempt started.
    pub time: String,
    /// The request ID the caller also received.
    pub request_id: String,
    /// The request ID the caller sent, when it sent one (an intentgate
    /// sidecar sends its own), to join the hops of one call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_request_id: Option<String>,
    /// Listener name.
    pub listener: String,
    /// Peer address.
    pub peer: String,
    /// `http` or `grpc`.
    pub protocol: String,
    /// HTTP method or gRPC method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Identity provider instance.
    pub identity_provider: String,
    /// The principal, when identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The trust anchor that vouched for the principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_anchor: Option<String>,
    /// Whether the caller sent no credential and the workload's own
    /// (sidecar, `credential.ambient_file`) was used.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ambient_credential: bool,
    /// Whether the identity came from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_cached: Option<bool>,
    /// The Cedar action (the first, when a call asks several questions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The Cedar resource (likewise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Every question, when a call asked more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<AuditQuestion>,
    /// `allow`, `deny` or `error` (a failure that denied).
    pub decision: &'static str,
    /// The determining policy IDs.
    pub policies: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// Evaluation and plugin errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The backend identity the call was bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// The upstream's status, when forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// The gRPC status the call ended with (upstream's, or the gate's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<i32>,
    /// Whether the connector said the call may be replayed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay_safe: bool,
    /// Upstream attempts beyond the first (retries).
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Whether upstream was asked what a capability is bound to.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub capability_lookup: bool,
    /// Time from accept to response head, in microseconds.
    pub latency_us: u64,
    /// Set when a field was cut to [`MAX_FIELD_BYTES`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One authorization question and its answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditQuestion {
    /// Cedar action.
    pub action: String,
    /// Cedar resource.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Determining policies.
    pub policies: Vec<String>,
}

impl AuditRecord {
    /// Caps every string field, marking the record when anything was cut.
    pub fn cap_fields(&mut self) {
        let mut cut = false;
        let mut cap = |s: &mut String| {
            if s.len() > MAX_FIELD_BYTES {
                let mut end = MAX_FIELD_BYTES;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let dropped = s.len() - end;
                s.truncate(end);
                s.push_str(&format!("…[truncated {dropped} bytes]"));
                cut = true;
            }
        };
        for s in [
            &mut self.request_id,
            &mut self.listener,
            &mut self.peer,
            &mut self.method,
            &mut self.path,
            &mut self.reason,
        ] {
            cap(s);
        }
        for s in [
            &mut self.principal,
            &mut self.trust_anchor,
            &mut self.action,
            &mut self.resource,
            &mut self.binding,
        ]
        .into_iter()
        .flatten()
        {
            cap(s);
        }
        self.errors
            .iter_mut()
            .chain(self.policies.iter_mut())
            .for_each(&mut cap);
        for q in &mut self.requests {
            cap(&mut q.action);
            cap(&mut q.resource);
        }
        self.truncated |= cut;
    }

    /// The record as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"kind":"audit","request_id":{:?},"decision":"error","reason":"record not serializable: {e}"}}"#, self.request_id)
        })
    }
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

impl AuditOutput {
    /// `stdout` or a path (relative to `base`).
    pub fn parse(text: &str, base: &std::path::Path) -> Self {
        if text == "stdout" {
            Self::Stdout
        } else {
            Self::File(base.join(text))
        }
    }
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
}

/// Records waiting to be written before requests start to wait.
const QUEUE: usize = 8192;

/// How long the writer lets records gather between two writes.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(1);

impl AuditSink {
    /// Starts the writer task.
    ///
    /// # Errors
    /// When the output file cannot be opened.
    pub fn start(output: &AuditOutput) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let mut writer: Box<dyn Write + Send> = match output {
            AuditOutput::Stdout => Box::new(std::io::stdout()),
            AuditOutput::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, mut rx) = mpsc::channel::<AuditRecord>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut buffer = Vec::with_capacity(64 << 10);
            while let Some(record) = rx.blocking_recv() {
                buffer.clear();
                push_line(&mut buffer, record);
                // Batch whatever else is already queued into one write.
                while let Ok(next) = rx.try_recv() {
                    push_line(&mut buffer, next);
                }
                if let Err(e) = writer.write_all(&buffer).and_then(|()| writer.flush()) {
                    tracing::error!(error = %e, "cannot write audit records");
                }
                // Let records gather before the next write: a parked writer
                // costs every request a futex wake-up, a sleeping one costs
                // nothing. Records wait at most this long; shutdown still
                // drains the queue.
                std::thread::sleep(BATCH_WINDOW);
            }
        });
        Ok((Self { tx }, task))
    }

    /// Queues a record, waiting when the queue is full.
    pub async fn record(&self, mut record: AuditRecord) {
        crate::metrics::metrics().attempt(&record);
        record.cap_fields();
        if let Err(lost) = self.tx.send(record).await {
            // The writer is gone (shutdown): write it ourselves.
            println!("{}", lost.0.to_json_line());
        }
    }
}

impl AuditSink {
    /// Queues a record from code that cannot wait (a response body's end):
    /// straight into the queue when there is room, else from a task that
    /// waits for room. Nothing is dropped.
    pub fn record_detached(&self, mut record: AuditRecord) {
        crate::metrics::metrics().attempt(&record);
        record.cap_fields();
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                let tx = self.tx.clone();
                let waiting = async move {
                    if let Err(lost) = tx.send(record).await {
                        println!("{}", lost.0.to_json_line());
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(waiting);
                    }
                    Err(_) => tracing::error!("audit record lost: no runtime to queue it from"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(record)) => {
                println!("{}", record.to_json_line());
            }
        }
    }
}

fn push_line(buffer: &mut Vec<u8>, record: AuditRecord) {
    buffer.extend_from_slice(record.to_json_line().as_bytes());
    buffer.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_fields_are_cut_and_marked() {
        let mut record = AuditRecord {
            kind: "audit",
            reason: "x".repeat(10_000),
            decision: "deny",
            ..Default::default()
        };
        record.cap_fields();
        assert!(record.truncated);
        assert!(record.reason.len() < 2200);
        assert!(
            record.reason.ends_with("[truncated 7952 bytes]"),
            "{}",
            &record.reason[2000..]
        );
        let line = record.to_json_line();
        assert!(line.contains(r#""truncated":true"#));
    }

    #[test]
    fn records_are_single_json_lines() {
        let record = AuditRecord {
            kind: "audit",
            reason: "a\nb".into(),
            decision: "allow",
            ..Default::default()
        };
        let line = record.to_json_line();
        assert!(!line.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["reason"], "a\nb");
        assert_eq!(back["decision"], "allow");
    }

    #[tokio::test]
    async fn a_file_sink_keeps_every_record() {
        let dir = std::env::temp_dir().join(format!("intentgate-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let (sink, task) = AuditSink::start(&AuditOutput::File(path.clone())).unwrap();
        for i in 0..20_000 {
            sink.record(AuditRecord {
                kind: "audit",
                request_id: i.to_string(),
                decision: "deny",
                ..Default::default()
            })
            .await;
        }
        drop(sink);
        task.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 20_000);
    }
}
