//! Listeners: one module per protocol. Each accepts connections, turns a
//! request into a [`crate::gate::Attempt`], runs the gate, forwards what is
//! allowed and audits every attempt.

pub mod admin;
pub mod grpc;
pub mod http;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

use ::http::header::{HeaderName, HeaderValue};
use ::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The request ID a caller sent (e.g. an intentgate sidecar's), kept in the
/// audit record to join the hops; only short, plain tokens are kept.
pub fn caller_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then(|| text.to_string())
}

/// The credential in a header value: the whole value when `scheme` is
/// empty, else what follows `<scheme> ` (scheme case-insensitive).
pub fn credential_from(value: &HeaderValue, scheme: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    if scheme.is_empty() {
        return Some(bytes.to_vec());
    }
    let scheme = scheme.as_bytes();
    let rest = bytes.get(scheme.len()..)?;
    (bytes[..scheme.len()].eq_ignore_ascii_case(scheme) && rest.first() == Some(&b' '))
        .then(|| rest[1..].trim_ascii().to_vec())
        .filter(|v| !v.is_empty())
}

/// Hop-by-hop headers, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut ::http::HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// How long connections may take to finish their calls once shutdown starts.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves one listener until `shutdown` turns true, then drains.
///
/// Draining: the listening socket is closed at once, so new connections
/// are refused (not left unanswered in the kernel's backlog); every open
/// connection is told to shut down gracefully (HTTP/2: GOAWAY, so clients
/// open no new streams on it; HTTP/1.1: idle connections close, busy ones
/// close after their response), and calls in flight run to the end, for at
/// most [`DRAIN_TIMEOUT`].
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    http2_only: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, hyper::Error>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| handler(req, peer));
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if http2_only {
            builder = builder.http2_only();
        }
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection(TokioIo::new(tls_stream), service)
                                .into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(error = %e, %peer, "connection ended with an error");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    // Refuse new connections from now on; connections the kernel accepted
    // but this loop did not are reset.
    drop(listener);
    // Drain: let in-flight requests finish.
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s of draining; closing them");
    }
}
