//! gRPC pieces for the listener tests: a scripted h2c upstream, a raw gRPC client, hand-encoded
//! Spanner messages, and the config of an intentgate gRPC listener in front of Spanner.
//!
//! The scripted upstream is a fake, and only used because fault injection (UNAVAILABLE twice,
//! a hang, 64 MiB offered to a caller that does not read) needs one. What the real Spanner
//! client and Google's mock server do through the listener is the Python suite's job
//! (`tests/spanner`). The upstream answers from a per-path script and otherwise behaves like
//! Spanner for sessions: CreateSession stores a session with the `creator_role` the request
//! carries (protobuf merge: the last one) and GetSession answers from that store, NOT_FOUND
//! for a name it never created.
//!
//! Nothing here decodes messages with generated types: the few fields the tests need are
//! written and read by hand ([`proto`]), so what goes on the wire is exactly what a test says.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::gateway::{Gateway, TempDir};

/// How long any one step of the harness may take before it is an error.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Protobuf wire format, by hand: just what the tests write and read.
pub mod proto {
    use anyhow::{Result, bail};

    /// Appends `n` as a varint.
    pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// Appends one length-delimited field (wire type 2): key, length, payload.
    pub fn put_bytes(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
        put_varint(out, u64::from(field) << 3 | 2);
        put_varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    /// One length-delimited field as bytes.
    pub fn bytes_field(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 6);
        put_bytes(&mut out, field, payload);
        out
    }

    /// A field's value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Value<'a> {
        /// Wire type 0.
        Varint(u64),
        /// Wire type 1 or 5, as read.
        Fixed(&'a [u8]),
        /// Wire type 2.
        Bytes(&'a [u8]),
    }

    fn varint(bytes: &[u8], at: &mut usize) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = bytes.get(*at) else {
                bail!("truncated varint");
            };
            *at += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        bail!("varint longer than 10 bytes")
    }

    /// Every field of `message`, in order.
    ///
    /// # Errors
    /// When `message` is not well-formed protobuf (or uses groups).
    pub fn fields(message: &[u8]) -> Result<Vec<(u32, Value<'_>)>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < message.len() {
            let key = varint(message, &mut at)?;
            let number = u32::try_from(key >> 3)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(message, &mut at)?),
                1 | 5 => {
                    let len = if key & 7 == 1 { 8 } else { 4 };
                    let Some(v) = message.get(at..at + len) else {
                        bail!("truncated fixed field");
                    };
                    at += len;
                    Value::Fixed(v)
                }
                2 => {
                    let len = usize::try_from(varint(message, &mut at)?)?;
                    let Some(v) = message.get(at..at.saturating_add(len)) else {
                        bail!("length-delimited field past the end");
                    };
                    at += len;
                    Value::Bytes(v)
                }
                t => bail!("wire type {t} is not handled"),
            };
            out.push((number, value));
        }
        Ok(out)
    }

    /// The last occurrence of length-delimited field `number` (protobuf keeps the last scalar).
    ///
    /// # Errors
    /// When `message` is not well-formed.
    pub fn last_bytes(message: &[u8], number: u32) -> Result<Option<&[u8]>> {
        Ok(fields(message)?
            .into_iter()
            .filter_map(|(n, v)| match v {
                Value::Bytes(b) if n == number => Some(b),
                _ => None,
            })
            .next_back())
    }
}

/// Hand-encoded `google.spanner.v1` messages.
pub mod spanner {
    use super::proto::{bytes_field, put_bytes};

    /// The path prefix of every Spanner RPC.
    pub const SERVICE: &str = "/google.spanner.v1.Spanner/";
    /// The instance the connector is configured with.
    pub const INSTANCE: &str = "projects/p/instances/i";
    /// The database the test policy permits.
    pub const DATABASE: &str = "projects/p/instances/i/databases/d";
    /// The database role the test policy names.
    pub const ROLE: &str = "app_role";

    /// `/google.spanner.v1.Spanner/<rpc>`.
    pub fn path(rpc: &str) -> String {
        format!("{SERVICE}{rpc}")
    }

    /// `CreateSessionRequest { database (1) }`.
    pub fn create_session(database: &str) -> Vec<u8> {
        bytes_field(1, database.as_bytes())
    }

    /// `ExecuteSqlRequest { session (1), sql (3) }`: no selector, a single-use read.
    /// ExecuteStreamingSql takes the same message.
    pub fn execute_sql(session: &str, sql: &str) -> Vec<u8> {
        let mut out = bytes_field(1, session.as_bytes());
        put_bytes(&mut out, 3, sql.as_bytes());
        out
    }

    /// `CommitRequest { session (1), transaction_id (2) }`: replay-protected by its id.
    pub fn commit_transaction(session: &str, transaction_id: &[u8]) -> Vec<u8> {
        let mut out = bytes_field(1, session.as_bytes());
        put_bytes(&mut out, 2, transaction_id);
        out
    }

    /// `CommitRequest { session (1), single_use_transaction (3) = TransactionOptions {
    /// read_write (1): {} } }`: no id to deduplicate it by.
    pub fn commit_single_use(session: &str) -> Vec<u8> {
        let mut out = bytes_field(1, session.as_bytes());
        put_bytes(&mut out, 3, &bytes_field(1, &[]));
        out
    }

    /// `GetSessionRequest { name (1) }`.
    pub fn get_session(name: &str) -> Vec<u8> {
        bytes_field(1, name.as_bytes())
    }

    /// `Session { name (1), creator_role (5) }`.
    pub fn session(name: &str, creator_role: &str) -> Vec<u8> {
        let mut out = bytes_field(1, name.as_bytes());
        put_bytes(&mut out, 5, creator_role.as_bytes());
        out
    }

    /// What intentgate appends to a CreateSession request to force the role:
    /// `session (2) = Session { creator_role (5) = role }`.
    pub fn creator_role_bytes(role: &str) -> Vec<u8> {
        bytes_field(2, &bytes_field(5, role.as_bytes()))
    }
}

/// gRPC framing, `grpc-timeout` and `grpc-message`, written independently of the host's code.
pub mod wire {
    use std::time::Duration;

    use anyhow::{Result, bail};
    use bytes::Bytes;

    /// One uncompressed length-prefixed message.
    pub fn frame(message: &[u8]) -> Bytes {
        frame_with_flag(0, message)
    }

    /// One length-prefixed message with the given compressed-flag byte.
    pub fn frame_with_flag(flag: u8, message: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(message.len() + 5);
        out.push(flag);
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    /// Splits a body into its length-prefixed messages.
    ///
    /// # Errors
    /// A truncated frame or a compressed one.
    pub fn messages(mut body: &[u8]) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let Some(header) = body.get(..5) else {
                bail!("a truncated gRPC frame header ({} bytes)", body.len());
            };
            if header[0] != 0 {
                bail!("a compressed (flag {}) gRPC message", header[0]);
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let Some(message) = body.get(5..5 + len) else {
                bail!("a truncated gRPC message ({len} bytes announced)");
            };
            out.push(Bytes::copy_from_slice(message));
            body = &body[5 + len..];
        }
        Ok(out)
    }

    /// Parses a `grpc-timeout` value (`<1..8 digits><H|M|S|m|u|n>`).
    pub fn parse_timeout(value: &str) -> Option<Duration> {
        let unit = value.chars().last()?;
        let digits = &value[..value.len() - unit.len_utf8()];
        if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        Some(match unit {
            'H' => Duration::from_secs(n * 3600),
            'M' => Duration::from_secs(n * 60),
            'S' => Duration::from_secs(n),
            'm' => Duration::from_millis(n),
            'u' => Duration::from_micros(n),
            'n' => Duration::from_nanos(n),
            _ => return None,
        })
    }

    /// Percent-encodes a `grpc-message`.
    pub fn encode_message(message: &str) -> String {
        let mut out = String::new();
        for b in message.bytes() {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Decodes a percent-encoded `grpc-message`.
    pub fn decode_message(value: &[u8]) -> String {
        let mut out = Vec::with_capacity(value.len());
        let mut i = 0;
        while i < value.len() {
            if value[i] == b'%'
                && let Some(hex) = value.get(i + 1..i + 3)
                && let Ok(text) = std::str::from_utf8(hex)
                && let Ok(b) = u8::from_str_radix(text, 16)
            {
                out.push(b);
                i += 3;
            } else {
                out.push(value[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// gRPC status codes the tests look at.
pub mod code {
    /// OK.
    pub const OK: i32 = 0;
    /// INVALID_ARGUMENT.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// DEADLINE_EXCEEDED.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// NOT_FOUND.
    pub const NOT_FOUND: i32 = 5;
    /// PERMISSION_DENIED.
    pub const PERMISSION_DENIED: i32 = 7;
    /// RESOURCE_EXHAUSTED.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// ABORTED.
    pub const ABORTED: i32 = 10;
    /// UNIMPLEMENTED.
    pub const UNIMPLEMENTED: i32 = 12;
    /// UNAVAILABLE.
    pub const UNAVAILABLE: i32 = 14;
    /// UNAUTHENTICATED.
    pub const UNAUTHENTICATED: i32 = 16;
}

// ---------------------------------------------------------------------------------------------
// The scripted upstream.

/// One answer of the scripted upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A trailers-only response: HTTP 200, `grpc-status`, `grpc-message` and, when given,
    /// `grpc-status-details-bin` (these bytes, base64 without padding), in one HEADERS frame.
    Status {
        /// The gRPC status code.
        code: i32,
        /// `grpc-message`.
        message: String,
        /// The `google.rpc.Status` bytes for `grpc-status-details-bin`.
        details: Option<Vec<u8>>,
    },
    /// Headers, this one message, trailers `grpc-status: 0`.
    Message(Vec<u8>),
    /// Headers, `count` messages of `size` bytes (the first 4 bytes of message `i` are `i`
    /// big-endian, the rest is `i as u8`), `delay` before each, then trailers
    /// `grpc-status: 0`. Sent through a channel of one slot, so the upstream's send loop
    /// only gets ahead of what HTTP/2 took by one message; [`ScriptedUpstream::streamed_bytes`]
    /// counts what it handed over.
    Stream {
        /// Messages.
        count: usize,
        /// Bytes per message (at least 4).
        size: usize,
        /// Wait before each message.
        delay: Duration,
    },
    /// Never answer (the request is recorded first).
    Hang,
    /// Spanner's behaviour: CreateSession makes and stores a session with the request's
    /// `creator_role`; GetSession answers a stored one or NOT_FOUND; anything else answers
    /// an empty message with OK.
    Spanner,
}

impl Reply {
    /// A trailers-only status without details.
    pub fn status(code: i32, message: &str) -> Self {
        Self::Status {
            code,
            message: message.into(),
            details: None,
        }
    }
}

/// A per-path script: `first` in order, then `then` for every later call.
#[derive(Debug, Clone)]
struct Script {
    first: VecDeque<Reply>,
    then: Reply,
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path (`/google.spanner.v1.Spanner/ExecuteSql`).
    pub path: String,
    /// Its headers (metadata).
    pub headers: HeaderMap,
    /// The whole request body, framing included.
    pub body: Bytes,
    /// When its headers arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The one message of the body, without its 5-byte header.
    ///
    /// # Errors
    /// When the body is not exactly one uncompressed message.
    pub fn message(&self) -> Result<Bytes> {
        let mut messages = wire::messages(&self.body)?;
        if messages.len() != 1 {
            bail!("{} messages in the request body", messages.len());
        }
        messages.pop().context("no message")
    }

    /// The `grpc-timeout` it carried, parsed.
    pub fn grpc_timeout(&self) -> Option<Duration> {
        self.header("grpc-timeout").and_then(wire::parse_timeout)
    }
}

#[derive(Default)]
struct State {
    scripts: Mutex<HashMap<String, Script>>,
    requests: Mutex<Vec<Recorded>>,
    /// Session name -> creator_role.
    sessions: Mutex<BTreeMap<String, String>>,
    next_session: AtomicU64,
    streamed: AtomicU64,
}

/// An h2c gRPC server on 127.0.0.1 that records every request and answers from a script.
/// Stopped (listener and every connection) on drop or [`ScriptedUpstream::shutdown`].
pub struct ScriptedUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    server: Option<JoinHandle<()>>,
}

impl ScriptedUpstream {
    /// Binds 127.0.0.1:0 and serves.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the scripted upstream")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let served = state.clone();
        let server = tokio::spawn(async move {
            // Owned here, so aborting this task closes every connection too.
            let mut connections = JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = served.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts `rpc` (a method name such as `ExecuteSql`, or a full path): answer `first` in
    /// order, then `then` for every later call. Replaces an earlier script for that path.
    pub fn script(&self, rpc: &str, first: Vec<Reply>, then: Reply) {
        let path = full_path(rpc);
        if let Ok(mut scripts) = self.state.scripts.lock() {
            scripts.insert(
                path,
                Script {
                    first: first.into(),
                    then,
                },
            );
        }
    }

    /// Stores a session as if upstream had created it with `creator_role`.
    pub fn add_session(&self, name: &str, creator_role: &str) {
        if let Ok(mut sessions) = self.state.sessions.lock() {
            sessions.insert(name.into(), creator_role.into());
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The requests to `rpc` (a method name or a full path) so far.
    pub fn requests_to(&self, rpc: &str) -> Vec<Recorded> {
        let path = full_path(rpc);
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Bytes of [`Reply::Stream`] messages handed to HTTP/2 so far (all streams).
    pub fn streamed_bytes(&self) -> u64 {
        self.state.streamed.load(Ordering::SeqCst)
    }

    /// Stops serving: the port closes and every open connection is dropped.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn full_path(rpc: &str) -> String {
    if rpc.starts_with('/') {
        rpc.to_string()
    } else {
        spanner::path(rpc)
    }
}

type UpstreamBody = BoxBody<Bytes, Infallible>;

/// A body fed by a channel, so a sending task can wait for HTTP/2 to take each frame.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

async fn answer(state: Arc<State>, req: Request<Incoming>) -> Response<UpstreamBody> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(STEP_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => return status_response(13, "the scripted upstream could not read the request", None),
    };
    let recorded = Recorded {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
        at,
    };
    let reply = {
        let mut scripts = state.scripts.lock().ok();
        match scripts.as_mut().and_then(|s| s.get_mut(&recorded.path)) {
            Some(script) => script
                .first
                .pop_front()
                .unwrap_or_else(|| script.then.clone()),
            None => Reply::Spanner,
        }
    };
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(recorded.clone());
    }
    match reply {
        Reply::Status {
            code,
            message,
            details,
        } => status_response(code, &message, details.as_deref()),
        Reply::Message(message) => message_response(vec![Bytes::from(message)]),
        Reply::Stream { count, size, delay } => stream_response(state, count, size, delay),
        Reply::Hang => std::future::pending().await,
        Reply::Spanner => spanner_answer(&state, &recorded),
    }
}

fn spanner_answer(state: &State, recorded: &Recorded) -> Response<UpstreamBody> {
    let message = match recorded.message() {
        Ok(m) => m,
        Err(e) => return status_response(3, &format!("scripted upstream: {e}"), None),
    };
    let rpc = recorded
        .path
        .strip_prefix(spanner::SERVICE)
        .unwrap_or_default();
    match rpc {
        "CreateSession" => {
            let database = proto::last_bytes(&message, 1)
                .ok()
                .flatten()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .unwrap_or_default();
            // Protobuf merges every `session` (2) occurrence; the last `creator_role` wins.
            let role = proto::fields(&message)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(n, v)| match v {
                    proto::Value::Bytes(b) if n == 2 => proto::last_bytes(b, 5).ok().flatten(),
                    _ => None,
                })
                .next_back()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_default();
            let n = state.next_session.fetch_add(1, Ordering::SeqCst);
            let name = format!("{database}/sessions/s{n}");
            if let Ok(mut sessions) = state.sessions.lock() {
                sessions.insert(name.clone(), role.clone());
            }
            message_response(vec![Bytes::from(spanner::session(&name, &role))])
        }
        "GetSession" => {
            let name = proto::last_bytes(&message, 1)
                .ok()
                .flatten()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .unwrap_or_default();
            let role = state
                .sessions
                .lock()
                .ok()
                .and_then(|s| s.get(&name).cloned());
            match role {
                Some(role) => message_response(vec![Bytes::from(spanner::session(&name, &role))]),
                None => status_response(5, &format!("Session not found: {name}"), None),
            }
        }
        _ => message_response(vec![Bytes::new()]),
    }
}

fn grpc_head() -> Response<UpstreamBody> {
    let mut response = Response::new(Empty::new().boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

fn status_response(code: i32, message: &str, details: Option<&[u8]>) -> Response<UpstreamBody> {
    let mut response = grpc_head();
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&wire::encode_message(message)) {
        headers.insert("grpc-message", v);
    }
    if let Some(details) = details
        && let Ok(v) =
            HeaderValue::from_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(details))
    {
        headers.insert("grpc-status-details-bin", v);
    }
    response
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(0));
    trailers
}

fn message_response(messages: Vec<Bytes>) -> Response<UpstreamBody> {
    let (tx, rx) = mpsc::channel(messages.len() + 1);
    for m in messages {
        let _ = tx.try_send(Frame::data(wire::frame(&m)));
    }
    let _ = tx.try_send(Frame::trailers(ok_trailers()));
    let mut response = grpc_head();
    *response.body_mut() = ChannelBody(rx).boxed();
    response
}

fn stream_response(
    state: Arc<State>,
    count: usize,
    size: usize,
    delay: Duration,
) -> Response<UpstreamBody> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..count {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut message = vec![i as u8; size.max(4)];
            message[..4].copy_from_slice(&(i as u32).to_be_bytes());
            let framed = wire::frame(&message);
            let len = framed.len() as u64;
            // Returns when the body took the previous frame: HTTP/2 flow control decides.
            if tx.send(Frame::data(framed)).await.is_err() {
                return;
            }
            state.streamed.fetch_add(len, Ordering::SeqCst);
        }
        let _ = tx.send(Frame::trailers(ok_trailers())).await;
    });
    let mut response = grpc_head();
    *response.body_mut() = ChannelBody(rx).boxed();
    response
}

// ---------------------------------------------------------------------------------------------
// The raw client.

/// What a gRPC call got back.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    /// The HTTP status.
    pub http_status: u16,
    /// Response headers (for a trailers-only response, these hold the status too).
    pub headers: HeaderMap,
    /// The trailers, when the response had a body part.
    pub trailers: Option<HeaderMap>,
    /// The response messages, unframed.
    pub messages: Vec<Bytes>,
    /// From sending the request to the end of the response.
    pub elapsed: Duration,
}

impl GrpcReply {
    /// Where the status is: the trailers, else (trailers-only) the headers.
    fn status_map(&self) -> &HeaderMap {
        match &self.trailers {
            Some(t) if t.contains_key("grpc-status") => t,
            _ => &self.headers,
        }
    }

    /// The `grpc-status`, if any.
    pub fn code(&self) -> Option<i32> {
        self.status_map()
            .get("grpc-status")?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The decoded `grpc-message` (empty when none).
    pub fn message(&self) -> String {
        self.status_map()
            .get("grpc-message")
            .map(|v| wire::decode_message(v.as_bytes()))
            .unwrap_or_default()
    }

    /// Whether the status came in the headers (a trailers-only response).
    pub fn trailers_only(&self) -> bool {
        self.headers.contains_key("grpc-status")
    }

    /// A metadata value from the trailers or, failing that, the headers.
    pub fn metadata(&self, name: &str) -> Option<&HeaderValue> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
    }

    /// The `x-request-id` header.
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    }
}

/// A request body of known bytes that does not tell its size, so hyper adds no
/// `content-length` (gRPC clients send none; a test that wants one sets it as metadata).
pub struct UnsizedBody(Option<Bytes>);

impl Body for UnsizedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// A raw gRPC client: one h2c connection, any bytes as the request body.
pub struct GrpcClient {
    sender: SendRequest<UnsizedBody>,
    authority: String,
    connection: JoinHandle<()>,
}

impl GrpcClient {
    /// Connects to `url` (`http://127.0.0.1:PORT`) with HTTP/2 prior knowledge.
    ///
    /// # Errors
    /// When the connection or the handshake fails or times out.
    pub async fn connect(url: &str) -> Result<Self> {
        let authority = url
            .strip_prefix("http://")
            .with_context(|| format!("not an http:// URL: {url}"))?
            .trim_end_matches('/')
            .to_string();
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
            let _ = tcp.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await?;
            anyhow::Ok((sender, connection))
        };
        let (sender, connection) = tokio::time::timeout(STEP_TIMEOUT, connecting)
            .await
            .map_err(|_| anyhow!("connecting to {url} timed out"))?
            .with_context(|| format!("connecting to {url}"))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            authority,
            connection,
        })
    }

    /// Sends one request: POST `path` with `content-type: application/grpc`, `te: trailers`,
    /// then `metadata` (which replaces those when it names them), and `body` as is, without
    /// `content-length` unless `metadata` has one. Returns
    /// when the response head arrived, with the time the request was sent.
    ///
    /// # Errors
    /// When the request fails or no head arrives within [`STEP_TIMEOUT`].
    pub async fn start(
        &self,
        path: &str,
        metadata: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(Response<Incoming>, Instant)> {
        let mut request = Request::new(UnsizedBody(Some(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = format!("http://{}{path}", self.authority).parse()?;
        *request.version_mut() = http::Version::HTTP_2;
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        for (name, value) in metadata {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        let mut sender = self.sender.clone();
        let started = Instant::now();
        let sending = async {
            sender.ready().await?;
            sender.send_request(request).await
        };
        let response = tokio::time::timeout(STEP_TIMEOUT, sending)
            .await
            .map_err(|_| anyhow!("{path}: no response head within {STEP_TIMEOUT:?}"))?
            .with_context(|| format!("{path}: request failed"))?;
        Ok((response, started))
    }

    /// Sends one request and reads the whole response.
    ///
    /// # Errors
    /// As [`GrpcClient::start`] and [`read_reply`].
    pub async fn call(
        &self,
        path: &str,
        metadata: &[(&str, &str)],
        body: Bytes,
    ) -> Result<GrpcReply> {
        let (response, started) = self.start(path, metadata, body).await?;
        read_reply(response, started).await
    }

    /// A unary Spanner call: `message` framed once, `authorization: Bearer <token>` when a
    /// token is given, plus `metadata`.
    ///
    /// # Errors
    /// As [`GrpcClient::call`].
    pub async fn unary(
        &self,
        rpc: &str,
        token: Option<&str>,
        message: &[u8],
        metadata: &[(&str, &str)],
    ) -> Result<GrpcReply> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = metadata.to_vec();
        if let Some(b) = &bearer {
            all.push(("authorization", b.as_str()));
        }
        self.call(&full_path(rpc), &all, wire::frame(message)).await
    }
}

impl Drop for GrpcClient {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Reads a whole response (bounded by [`STEP_TIMEOUT`]); `started` is when it was sent.
///
/// # Errors
/// When the body fails, is not gRPC framing, or takes too long.
pub async fn read_reply(response: Response<Incoming>, started: Instant) -> Result<GrpcReply> {
    let (parts, mut body) = response.into_parts();
    let reading = async {
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the response body")?;
            match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        anyhow::Ok((data, trailers))
    };
    let (data, trailers) = tokio::time::timeout(STEP_TIMEOUT, reading)
        .await
        .map_err(|_| anyhow!("the response body did not end within {STEP_TIMEOUT:?}"))??;
    Ok(GrpcReply {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        trailers,
        messages: wire::messages(&data)?,
        elapsed: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------------------------
// The gateway config.

/// The upstream credential intentgate presents (from `UPSTREAM_TOKEN`).
pub const UPSTREAM_TOKEN: &str = "upstream-token-5c1e";
/// The JWT audience the listener accepts.
pub const AUDIENCE: &str = "it";
/// The subject the policy permits.
pub const SUBJECT: &str = "app";

/// The Cedar policy: `app` may read and write (and so connect to) the test database, with
/// database role `app_role`.
pub fn policy(issuer: &str) -> String {
    format!(
        r#"@id("app-rw")
@database_role("{role}")
permit (
  principal == Oidc::Subject::"{issuer}#{SUBJECT}",
  action in [Spanner::Action::"read", Spanner::Action::"write"],
  resource == Spanner::Database::"{database}"
);
"#,
        role = spanner::ROLE,
        database = spanner::DATABASE,
    )
}

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// An intentgate with one h2c gRPC listener in front of a Spanner upstream, its folder, and
/// its audit file. Stopped (SIGTERM) on drop, before the folder goes.
pub struct GrpcGateway {
    /// The running process.
    pub gateway: Gateway,
    /// The listener's URL.
    pub url: String,
    /// The config folder.
    pub dir: TempDir,
}

impl GrpcGateway {
    /// Writes the config and policy, and starts intentgate: OIDC identity from `issuer`
    /// (audience [`AUDIENCE`]), the Spanner connector for [`spanner::INSTANCE`], and a gRPC
    /// listener on a free port sending to `upstream` with `authorization: Bearer
    /// <UPSTREAM_TOKEN>`. `listener_keys` are extra listener keys (e.g.
    /// `max_message_bytes = 1024`).
    ///
    /// # Errors
    /// When the config cannot be written or intentgate does not start.
    pub async fn start(issuer: &str, upstream: &str, listener_keys: &str) -> Result<Self> {
        let dir = TempDir::new("grpc")?;
        let policies = dir.write("policies/spanner.cedar", &policy(issuer))?;
        let policies = policies.parent().map(PathBuf::from).unwrap_or_default();
        let audit = dir.path().join("audit.jsonl");
        let port = crate::free_port()?;
        let today = crate::today();
        let config = format!(
            r#"[audit]
output = {audit}

[[identity]]
name = "oidc"
plugin = {oidc}
outbound = [{{ origin = {issuer}, private = true }}]
config = {{ issuer = {issuer}, audiences = [{audience}] }}

[[trust_anchor]]
id = {issuer}
provider = "oidc"
reviewed = "{today}"

[[connector]]
name = "spanner"
plugin = {spanner}
config = {{ instances = [{instance}] }}

[policy]
policies = [{policies}]

[[listener]]
name = "spanner"
protocol = "grpc"
bind = "127.0.0.1:{port}"
identity = "oidc"
connector = "spanner"
credential = {{ header = "authorization", scheme = "Bearer" }}
upstream = {upstream}
upstream_credential = {{ header = "authorization", prefix = "Bearer ", value_env = "UPSTREAM_TOKEN" }}
{listener_keys}
"#,
            audit = toml_string(&audit.display().to_string()),
            oidc = toml_string(&crate::plugin_path("oidc").display().to_string()),
            spanner = toml_string(&crate::plugin_path("spanner").display().to_string()),
            issuer = toml_string(issuer),
            audience = toml_string(AUDIENCE),
            instance = toml_string(spanner::INSTANCE),
            policies = toml_string(&policies.display().to_string()),
            upstream = toml_string(upstream),
        );
        let config = dir.write("intentgate.toml", &config)?;
        let gateway =
            Gateway::start(&config, &audit, port, &[("UPSTREAM_TOKEN", UPSTREAM_TOKEN)]).await?;
        let url = gateway.url.clone();
        Ok(Self { gateway, url, dir })
    }
}
