//! The gRPC listener: HTTP/2 (h2c, or TLS with ALPN h2) in front of one gRPC
//! upstream, forwarding **raw bytes**.
//!
//! The request's one message is read whole (every unary-request RPC, which
//! is all of Spanner's), shown to the gate, re-framed with the connector's
//! appended bytes and sent on a pooled upstream connection. The response
//! streams back untouched (unknown fields survive; trailers, flow control
//! and cancellation pass through), except that calls the connector asked to
//! observe are read whole first. Replay-safe calls are retried on
//! UNAVAILABLE and RESOURCE_EXHAUSTED while nothing has reached the caller.

mod body;
mod channels;
mod retry;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;

pub use body::ResponseBody;
use body::{Buffered, Relayed, status_in};
pub use channels::{ChannelStats, Channels};
use retry::Backoff;
use wire::Code;

use crate::audit::{AuditRecord, AuditSink};
use crate::capability::CapabilityCache;
use crate::clock;
use crate::gate::{Attempt, CapabilityLookup, DenyKind, Gate, LookupAnswer, LookupFuture, Verdict};
use crate::listener::http::REQUEST_ID;
use crate::plugin::{Binding, CallInput};
use crate::upstream_auth::UpstreamAuth;

/// How long a caller may take to send its request message.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response the proxy reads whole (observed and lookup calls).
const MAX_BUFFERED_RESPONSE: usize = 4 << 20;
/// Most upstream attempts for one call (gRPC caps retry policies at 5).
const MAX_ATTEMPTS: u32 = 5;

/// Settings of one gRPC listener.
pub struct GrpcSettings {
    /// Where the caller's credential is.
    pub credential_header: HeaderName,
    /// Its scheme (e.g. `Bearer`), empty for the whole value.
    pub credential_scheme: String,
    /// Largest request message accepted.
    pub max_message_bytes: usize,
    /// Whether the listener terminates TLS.
    pub tls: bool,
    /// The workload's own credential, for callers that send none (sidecar).
    pub ambient: Option<crate::ambient::AmbientCredential>,
}

/// One gRPC listener's proxy.
pub struct GrpcProxy {
    gate: Gate,
    upstream: Arc<Upstream>,
    settings: GrpcSettings,
    audit: AuditSink,
    capabilities: Arc<CapabilityCache>,
}

/// The upstream side: connections and the proxy's own credential.
pub struct Upstream {
    channels: Channels,
    credential: UpstreamAuth,
}

impl Upstream {
    /// Wraps a connection pool.
    pub fn new(channels: Channels, credential: UpstreamAuth) -> Self {
        Self {
            channels,
            credential,
        }
    }

    /// Connection counters.
    pub fn stats(&self) -> ChannelStats {
        self.channels.stats()
    }
}

impl GrpcProxy {
    /// Builds the proxy; the gate gets a capability cache and asks this
    /// listener's upstream about capabilities it has not seen.
    pub fn new(
        gate: Gate,
        upstream: Arc<Upstream>,
        settings: GrpcSettings,
        audit: AuditSink,
        max_capabilities: usize,
    ) -> Self {
        let capabilities = Arc::new(CapabilityCache::new(max_capabilities));
        let gate = gate.with_capabilities(crate::gate::Capabilities {
            cache: capabilities.clone(),
            upstream: upstream.clone(),
        });
        Self {
            gate,
            upstream,
            settings,
            audit,
            capabilities,
        }
    }

    /// The capabilities this listener has learned (read by the `/metrics` gauge).
    pub fn capabilities(&self) -> &Arc<CapabilityCache> {
        &self.capabilities
    }

    /// Handles one call: read, decide, forward or refuse, audit.
    ///
    /// The future is boxed: a call's state (message, audit record, the
    /// connector call) is several KiB, and hyper moves the service future
    /// into each stream's task, so moving a pointer beats copying the state.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, hyper::Error>> + Send>> {
        Box::pin(self.handle_call(req, peer))
    }

    async fn handle_call(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ResponseBody>, hyper::Error> {
        let started = Instant::now();
        let request_id = uuid::Uuid::now_v7().to_string();
        let (secs, micros) = clock::now();
        let path = req.uri().path().to_string();
        let mut record = AuditRecord {
            kind: "audit",
            time: clock::format_rfc3339(secs, micros),
            request_id: request_id.clone(),
            listener: self.gate.listener().to_string(),
            peer: peer.to_string(),
            protocol: "grpc".into(),
            method: path.clone(),
            path,
            decision: "deny",
            ..Default::default()
        };
        let response = self.serve_call(req, peer, started, &mut record).await;
        match response {
            Reply::Done(response) => {
                record.latency_us = started.elapsed().as_micros() as u64;
                self.audit.record(record).await;
                Ok(response)
            }
            Reply::Relayed(response) => Ok(response),
        }
    }

    async fn serve_call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        started: Instant,
        record: &mut AuditRecord,
    ) -> Reply {
        let request_id = record.request_id.clone();
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if req.method() != http::Method::POST || !is_grpc {
            record.reason = "not a gRPC call (POST with content-type application/grpc)".into();
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            return Reply::Done(response);
        }
        let (mut parts, body) = req.into_parts();
        let credential = parts
            .headers
            .remove(&self.settings.credential_header)
            .and_then(|v| super::credential_from(&v, &self.settings.credential_scheme));
        let credential = match (credential, &self.settings.ambient) {
            (Some(c), _) => Some(c),
            (None, Some(ambient)) => {
                record.ambient_credential = true;
                ambient.get().await.map(|a| a.to_vec())
            }
            (None, None) => None,
        };
        record.caller_request_id = parts
            .headers
            .remove(&REQUEST_ID)
            .and_then(|v| super::caller_request_id(&v));
        let deadline = parts
            .headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(wire::parse_timeout)
            .map(|t| started + t);

        // The one request message, bounded in size and time.
        let limit = self.settings.max_message_bytes.saturating_add(5);
        let read = tokio::time::timeout(REQUEST_READ_TIMEOUT, Limited::new(body, limit).collect());
        let bytes = match read.await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return self.refuse(
                    record,
                    Code::ResourceExhausted,
                    &format!(
                        "the request message is larger than this listener's {} bytes",
                        self.settings.max_message_bytes
                    ),
                );
            }
            Ok(Err(e)) => {
                return self.refuse(
                    record,
                    Code::Cancelled,
                    &format!("reading the request failed: {e}"),
                );
            }
            Err(_) => {
                return self.refuse(
                    record,
                    Code::DeadlineExceeded,
                    "the request message did not arrive within 30 s",
                );
            }
        };
        let message = match wire::single_message(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let code = match e {
                    wire::FrameError::Compressed => Code::Unimplemented,
                    _ => Code::InvalidArgument,
                };
                return self.refuse(record, code, &e.to_string());
            }
        };
        let call = CallInput {
            protocol: "grpc".into(),
            method: parts.uri.path().to_string(),
            path: parts.uri.path().to_string(),
            headers: parts
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    v.to_str()
                        .ok()
                        .map(|v| (k.as_str().to_string(), v.to_string()))
                })
                .collect(),
            body: message.to_vec(),
        };
        let attempt = Attempt {
            request_id: &request_id,
            peer,
            tls: self.settings.tls,
            credential: credential.as_deref(),
            call: &call,
        };
        let (binding, bound_to, observe) = match self.gate.decide(&attempt, record).await {
            Verdict::Deny { kind, reason } => {
                return self.refuse_kind(record, kind, &reason);
            }
            Verdict::Allow {
                binding,
                bound_to,
                observe_response,
            } => (binding, bound_to, observe_response),
        };
        let appended = binding
            .as_ref()
            .map_or(&[][..], |b| b.append_body.as_slice());
        let framed = wire::frame(&message, appended);
        let head = UpstreamHead::new(parts, binding.as_ref(), &request_id);
        let replay_safe = record.replay_safe;
        let response = match self
            .send_with_retries(&head, framed, replay_safe, deadline, record)
            .await
        {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        if observe {
            let mut bound_call = call;
            bound_call.body.extend_from_slice(appended);
            self.observed(response, &bound_call, bound_to.as_deref(), record)
                .await
        } else {
            let (parts, first, body) = response;
            record.latency_us = started.elapsed().as_micros() as u64;
            // The relayed body owns the record from here and writes it when the
            // stream ends; nothing else reads it after this.
            let relayed = Relayed::new(body, first, std::mem::take(record), self.audit.clone());
            Reply::Relayed(Response::from_parts(
                self.downstream_parts(parts, &request_id),
                relayed.boxed(),
            ))
        }
    }

    /// Sends the call, retrying replay-safe calls on a retryable status or
    /// a failed connection while nothing has reached the caller.
    async fn send_with_retries(
        &self,
        head: &UpstreamHead,
        framed: Bytes,
        replay_safe: bool,
        deadline: Option<Instant>,
        record: &mut AuditRecord,
    ) -> Result<Peeked, Reply> {
        let mut backoff = Backoff::spanner();
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(head, framed.clone(), deadline).await;
            // A retry counts once it went upstream: a wait that overran the
            // caller's deadline sent nothing.
            if attempt > 1 {
                if matches!(outcome, Attempted::DeadlineExceeded { sent: false }) {
                    record.errors.push(format!(
                        "attempt {attempt}: the caller's deadline passed during the wait; not sent"
                    ));
                } else {
                    record.retries += 1;
                }
            }
            let retry_reason = match &outcome {
                Attempted::Failed(e) => format!("upstream failed: {e}"),
                Attempted::Answered(parts, first, _) => {
                    let status = status_in(&parts.headers).or_else(|| {
                        first
                            .as_ref()
                            .and_then(|f| f.trailers_ref())
                            .and_then(status_in)
                    });
                    match status {
                        Some(code)
                            if wire::retryable(code)
                                && first.as_ref().is_none_or(|f| f.is_trailers()) =>
                        {
                            format!("upstream answered grpc-status {code}")
                        }
                        _ => String::new(),
                    }
                }
                Attempted::DeadlineExceeded { .. } => String::new(),
            };
            let wait = backoff.next();
            let may_retry = replay_safe
                && !retry_reason.is_empty()
                && attempt < MAX_ATTEMPTS
                && deadline.is_none_or(|d| Instant::now() + wait < d);
            if may_retry {
                record.errors.push(format!(
                    "attempt {attempt}: {retry_reason}; retrying in {} ms",
                    wait.as_millis()
                ));
                attempt += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return match outcome {
                Attempted::Answered(parts, first, body) => {
                    record.upstream_status = Some(parts.status.as_u16());
                    record.grpc_status = status_in(&parts.headers);
                    Ok((parts, first, body))
                }
                Attempted::Failed(e) => {
                    record.errors.push(e.clone());
                    Err(self.refuse_upstream(
                        record,
                        Code::Unavailable,
                        &format!("upstream unavailable: {e}"),
                    ))
                }
                Attempted::DeadlineExceeded { .. } => Err(self.refuse_upstream(
                    record,
                    Code::DeadlineExceeded,
                    "the call's deadline passed before upstream answered",
                )),
            };
        }
    }

    /// One upstream attempt, reading ahead the first body frame of
    /// replay-safe-looking answers so a trailers-only error can be retried.
    async fn attempt(
        &self,
        head: &UpstreamHead,
        framed: Bytes,
        deadline: Option<Instant>,
    ) -> Attempted {
        let remaining = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => return Attempted::DeadlineExceeded { sent: false },
            },
            None => None,
        };
        let request = match head.request(&self.upstream, framed, remaining) {
            Ok(r) => r,
            Err(e) => return Attempted::Failed(e),
        };
        let sending = async {
            let response = self.upstream.channels.send(request).await?;
            let (parts, mut body) = response.into_parts();
            if status_in(&parts.headers).is_some() || parts.status != StatusCode::OK {
                return Ok((parts, None, body));
            }
            let first = match body.frame().await {
                Some(Ok(frame)) => Some(frame),
                Some(Err(e)) => return Err(format!("upstream response failed: {e}")),
                None => None,
            };
            Ok((parts, first, body))
        };
        let result = match remaining {
            Some(r) => match tokio::time::timeout(r, sending).await {
                Ok(result) => result,
                Err(_) => return Attempted::DeadlineExceeded { sent: true },
            },
            None => sending.await,
        };
        match result {
            Ok((parts, first, body)) => Attempted::Answered(parts, first, body),
            Err(e) => Attempted::Failed(e),
        }
    }

    /// Reads a response whole, shows its message to the connector, learns
    /// the capabilities it created, and replays it to the caller.
    async fn observed(
        &self,
        (parts, first, body): Peeked,
        bound_call: &CallInput,
        bound_to: Option<&str>,
        record: &mut AuditRecord,
    ) -> Reply {
        let request_id = record.request_id.clone();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut pending = first;
        let mut body = Limited::new(body, MAX_BUFFERED_RESPONSE);
        loop {
            let frame = match pending.take() {
                Some(f) => Some(Ok(f)),
                None => body.frame().await,
            };
            match frame {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => data.extend_from_slice(&chunk),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            trailers = Some(t);
                        }
                    }
                },
                Some(Err(e)) => {
                    return self.refuse_upstream(
                        record,
                        Code::Unavailable,
                        &format!("reading upstream's response failed: {e}"),
                    );
                }
            }
        }
        let status = trailers
            .as_ref()
            .and_then(status_in)
            .or_else(|| status_in(&parts.headers));
        record.grpc_status = status;
        if status == Some(0) {
            let bytes = Bytes::from(data.clone());
            match wire::single_message(&bytes) {
                Ok(message) => match self.gate.connector().observe(bound_call, &message).await {
                    Ok(grants) => {
                        self.gate.learn(&grants, bound_to);
                    }
                    Err(e) => record.errors.push(format!(
                        "the connector could not read the response, so later calls are checked by lookup: {e}"
                    )),
                },
                Err(e) => record
                    .errors
                    .push(format!("upstream's response is not one message: {e}")),
            }
        }
        let parts = self.downstream_parts(parts, &request_id);
        Reply::Done(Response::from_parts(
            parts,
            Buffered::new(Bytes::from(data), trailers).boxed(),
        ))
    }

    fn downstream_parts(
        &self,
        mut parts: http::response::Parts,
        request_id: &str,
    ) -> http::response::Parts {
        super::strip_hop_by_hop(&mut parts.headers);
        if let Ok(value) = HeaderValue::from_str(request_id) {
            parts.headers.insert(REQUEST_ID, value);
        }
        parts
    }

    fn refuse_kind(&self, record: &mut AuditRecord, kind: DenyKind, reason: &str) -> Reply {
        let request_id = &record.request_id;
        let (code, message) = match kind {
            DenyKind::Unauthenticated => (
                Code::Unauthenticated,
                format!(
                    "authentication failed; the audit record for request {request_id} says why"
                ),
            ),
            DenyKind::Forbidden => (
                Code::PermissionDenied,
                format!("{reason} (request {request_id})"),
            ),
            DenyKind::Malformed => (
                Code::InvalidArgument,
                format!("{reason} (request {request_id})"),
            ),
            DenyKind::NotFound => (Code::NotFound, format!("{reason} (request {request_id})")),
            DenyKind::Unavailable => (
                Code::Unavailable,
                format!(
                    "a service the gate needs to decide this call is unreachable; try again later (request {request_id})"
                ),
            ),
            DenyKind::Failed => (
                Code::Internal,
                format!(
                    "the gate could not decide this call and denied it; the audit record for request {request_id} says why"
                ),
            ),
        };
        record.grpc_status = Some(code as i32);
        Reply::Done(status_response(code, &message, &record.request_id))
    }

    /// Refuses before the gate ran (framing, size, not gRPC).
    fn refuse(&self, record: &mut AuditRecord, code: Code, reason: &str) -> Reply {
        record.decision = "deny";
        record.reason = reason.to_string();
        record.grpc_status = Some(code as i32);
        let message = format!("{reason} (request {})", record.request_id);
        Reply::Done(status_response(code, &message, &record.request_id))
    }

    /// An allowed call that upstream could not serve.
    fn refuse_upstream(&self, record: &mut AuditRecord, code: Code, reason: &str) -> Reply {
        record.reason = format!("{}; {reason}", record.reason);
        record.grpc_status = Some(code as i32);
        let message = format!("{reason} (request {})", record.request_id);
        Reply::Done(status_response(code, &message, &record.request_id))
    }
}

impl CapabilityLookup for Upstream {
    fn lookup<'a>(&'a self, call: &'a CallInput, request_id: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let mut request = Request::new(Full::new(wire::frame(&call.body, &[])));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = self.channels.uri(&call.path)?;
            let headers = request.headers_mut();
            for (name, value) in &call.headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(name, value);
                }
            }
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
            headers.insert("grpc-timeout", HeaderValue::from_static("10S"));
            if let Ok(value) = HeaderValue::from_str(request_id) {
                headers.insert(REQUEST_ID, value);
            }
            self.credential.apply(headers);
            let sending = async {
                let response = self.channels.send(request).await?;
                let (parts, body) = response.into_parts();
                let collected = Limited::new(body, MAX_BUFFERED_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the lookup answer failed: {e}"))?;
                let trailers = collected.trailers().cloned();
                let bytes = collected.to_bytes();
                Ok::<_, String>((parts, trailers, bytes))
            };
            let (parts, trailers, bytes) = tokio::time::timeout(Duration::from_secs(10), sending)
                .await
                .map_err(|_| "upstream did not answer the lookup within 10 s".to_string())??;
            let grpc_message = |map: &http::HeaderMap| {
                map.get("grpc-message")
                    .map(|v| wire::decode_message(v.as_bytes()))
                    .unwrap_or_default()
            };
            let (status, message) = match trailers.as_ref().and_then(status_in) {
                Some(s) => (Some(s), trailers.as_ref().map(grpc_message)),
                None => (
                    status_in(&parts.headers),
                    Some(grpc_message(&parts.headers)),
                ),
            };
            match status {
                Some(0) => {
                    let message = wire::single_message(&bytes).map_err(|e| e.to_string())?;
                    Ok(LookupAnswer::Found(message.to_vec()))
                }
                Some(5) => Ok(LookupAnswer::NotFound(message.unwrap_or_default())),
                Some(7 | 16) => Ok(LookupAnswer::Refused(message.unwrap_or_default())),
                Some(code) => Err(format!(
                    "upstream answered grpc-status {code}: {}",
                    message.unwrap_or_default()
                )),
                None => Err(format!(
                    "upstream answered HTTP {} without a grpc-status",
                    parts.status
                )),
            }
        })
    }
}

/// What the upstream request is made of, built once per call and reused
/// for each attempt.
struct UpstreamHead {
    parts: http::request::Parts,
    request_id: HeaderValue,
}

impl UpstreamHead {
    fn new(mut parts: http::request::Parts, binding: Option<&Binding>, request_id: &str) -> Self {
        super::strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(http::header::HOST);
        // The body is re-framed (and may grow by the binding's bytes).
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.extensions = http::Extensions::new();
        if let Some(binding) = binding {
            for name in &binding.remove_headers {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    parts.headers.remove(name);
                }
            }
            for (name, value) in &binding.set_headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    parts.headers.insert(name, value);
                }
            }
        }
        // gRPC needs `te: trailers`, a hop-by-hop header removed above.
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
        let request_id =
            HeaderValue::from_str(request_id).unwrap_or_else(|_| HeaderValue::from_static(""));
        Self { parts, request_id }
    }

    fn request(
        &self,
        upstream: &Upstream,
        framed: Bytes,
        remaining: Option<Duration>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut request = Request::new(Full::new(framed));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = upstream.channels.uri(self.parts.uri.path())?;
        *request.version_mut() = http::Version::HTTP_2;
        let headers = request.headers_mut();
        headers.clone_from(&self.parts.headers);
        headers.insert(REQUEST_ID, self.request_id.clone());
        upstream.credential.apply(headers);
        if let Some(remaining) = remaining
            && let Ok(value) = HeaderValue::from_str(&wire::format_timeout(remaining))
        {
            // What is left of the caller's deadline, not what it started with.
            headers.insert("grpc-timeout", value);
        }
        Ok(request)
    }
}

type Peeked = (
    http::response::Parts,
    Option<hyper::body::Frame<Bytes>>,
    Incoming,
);

#[allow(
    clippy::large_enum_variant,
    reason = "one per attempt, moved once; boxing would only add an allocation"
)]
enum Attempted {
    Answered(
        http::response::Parts,
        Option<hyper::body::Frame<Bytes>>,
        Incoming,
    ),
    Failed(String),
    /// The caller's deadline passed; `sent` says whether this attempt had
    /// gone upstream (a retry whose wait overran the deadline has not).
    DeadlineExceeded {
        sent: bool,
    },
}

/// A response whose audit record is written now, or by the relayed body
/// when the stream ends.
enum Reply {
    Done(Response<ResponseBody>),
    Relayed(Response<ResponseBody>),
}

fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A trailers-only gRPC error response.
fn status_response(code: Code, message: &str, request_id: &str) -> Response<ResponseBody> {
    let mut response = Response::new(empty());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(value) = HeaderValue::from_str(&wire::encode_message(message)) {
        headers.insert("grpc-message", value);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    response
}
