//! A small pool of HTTP/2 connections to one gRPC upstream.
//!
//! Each connection multiplexes many calls; calls are spread round-robin.
//! Spanner's guidance is about 100 concurrent calls per channel, so a
//! gateway sizes the pool by its concurrency / 100. Connections open on
//! first use and reopen when they close; nothing is shared across
//! listeners.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// How long to wait for TCP, TLS and the HTTP/2 handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the upstream is and how to reach it.
struct Target {
    /// `host:port` for DNS and for `:authority`.
    authority: String,
    scheme: &'static str,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

struct Slot {
    current: Mutex<Option<SendRequest<Full<Bytes>>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// The pool.
pub struct Channels {
    listener: String,
    target: Target,
    slots: Vec<Slot>,
    next: AtomicUsize,
    connects: AtomicU64,
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Connections opened so far.
    pub connects: u64,
    /// Connections open now.
    pub open: usize,
}

impl Channels {
    /// A pool of `size` connections to `upstream` (`http://` for h2c,
    /// `https://` for TLS with ALPN h2). `ca` adds a trusted CA (PEM) to the
    /// system roots for `https://`.
    ///
    /// # Errors
    /// A bad URL, or roots or a CA file that cannot be loaded.
    pub fn new(
        listener: &str,
        upstream: &http::Uri,
        size: usize,
        ca: Option<&Path>,
    ) -> Result<Self, String> {
        let host = upstream
            .host()
            .ok_or_else(|| format!("upstream `{upstream}` has no host"))?;
        let (scheme, default_port) = match upstream.scheme_str() {
            Some("http") => ("http", 80),
            Some("https") => ("https", 443),
            _ => return Err(format!("upstream `{upstream}` is not http:// or https://")),
        };
        let port = upstream.port_u16().unwrap_or(default_port);
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if bare_host.contains(':') {
            format!("[{bare_host}]:{port}")
        } else {
            format!("{bare_host}:{port}")
        };
        let tls = if scheme == "https" {
            let name = ServerName::try_from(bare_host.to_string())
                .map_err(|e| format!("upstream host `{host}` is not a TLS server name: {e}"))?;
            Some((tls_connector(ca)?, name))
        } else {
            None
        };
        Ok(Self {
            listener: listener.to_string(),
            target: Target {
                authority,
                scheme,
                tls,
            },
            slots: (0..size.max(1))
                .map(|_| Slot {
                    current: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
        })
    }

    /// The absolute URI for `path` on the upstream.
    ///
    /// # Errors
    /// When `path` does not make a URI.
    pub fn uri(&self, path: &str) -> Result<http::Uri, String> {
        format!("{}://{}{path}", self.target.scheme, self.target.authority)
            .parse()
            .map_err(|e| format!("cannot build the upstream URI for `{path}`: {e}"))
    }

    /// Sends one request on the next connection, opening it if needed.
    ///
    /// # Errors
    /// When no connection can be opened or the request fails on it.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(i) else {
            return Err("no upstream connection slots".into());
        };
        let mut sender = self.sender(slot).await?;
        sender
            .ready()
            .await
            .map_err(|e| format!("upstream connection not ready: {e}"))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("upstream request failed: {e}"))
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            connects: self.connects.load(Ordering::Relaxed),
            open: self
                .slots
                .iter()
                .filter(|s| {
                    s.current
                        .lock()
                        .is_ok_and(|c| c.as_ref().is_some_and(|s| !s.is_closed()))
                })
                .count(),
        }
    }

    async fn sender(&self, slot: &Slot) -> Result<SendRequest<Full<Bytes>>, String> {
        if let Some(s) = live(slot) {
            return Ok(s);
        }
        // One connect per slot at a time; the others wait and reuse it.
        let _connecting = slot.connecting.lock().await;
        if let Some(s) = live(slot) {
            return Ok(s);
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                format!(
                    "connecting to upstream {} timed out after {CONNECT_TIMEOUT:?}",
                    self.target.authority
                )
            })??;
        self.connects.fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics().upstream_connect(&self.listener);
        if let Ok(mut current) = slot.current.lock() {
            *current = Some(sender.clone());
        }
        Ok(sender)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let authority = &self.target.authority;
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("cannot connect to upstream {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        match &self.target.tls {
            None => {
                let (sender, connection) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("HTTP/2 handshake with upstream {authority}: {e}"))?;
                spawn_connection(connection, authority);
                Ok(sender)
            }
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with upstream {authority}: {e}"))?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(format!(
                        "upstream {authority} did not agree to HTTP/2 (ALPN h2)"
                    ));
                }
                let (sender, connection) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP/2 handshake with upstream {authority}: {e}"))?;
                spawn_connection(connection, authority);
                Ok(sender)
            }
        }
    }
}

fn live(slot: &Slot) -> Option<SendRequest<Full<Bytes>>> {
    let current = slot.current.lock().ok()?;
    current.as_ref().filter(|s| !s.is_closed()).cloned()
}

fn spawn_connection<F>(connection: F, authority: &str)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    let authority = authority.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, upstream = %authority, "upstream connection ended");
        }
    });
}

fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read upstream CA file `{}`: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot parse upstream CA file `{}`: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "upstream CA file `{}` holds no certificate",
                ca.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("upstream CA file `{}`: {e}", ca.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no TLS roots for the upstream: the system has none and no `upstream_ca` is configured"
                .into(),
        );
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
