//! Outbound HTTP on behalf of plugins: allow-list, address checks after DNS,
//! no redirects, timeouts, size caps, and the host-side response cache
//! (JWKS, discovery documents) so plugins never keep state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use super::grants::{AddressClass, Origin, OutboundAllowList, classify_address};

/// How the host may use its cache for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Always fetch; store nothing.
    NoStore,
    /// Answer from a fresh cache entry, else fetch and store.
    UseCache,
    /// Fetch again unless the entry was fetched very recently.
    Refresh,
}

/// A request a plugin asked the host to send.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// HTTP method.
    pub method: String,
    /// Absolute http(s) URL.
    pub url: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Cache use.
    pub cache: CacheMode,
}

/// The answer handed back to the plugin.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (at most the configured cap).
    pub body: Bytes,
}

/// Why an outbound request failed. Nothing is sent for `Denied` and `Invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not granted, or the address is not reachable by policy.
    #[error("outbound request denied: {0}")]
    Denied(String),
    /// The request itself is malformed.
    #[error("invalid outbound request: {0}")]
    Invalid(String),
    /// The peer did not answer in time.
    #[error("outbound request timed out")]
    Timeout,
    /// The response was over the size cap.
    #[error("outbound response over the size cap")]
    TooLarge,
    /// Connection or protocol failure.
    #[error("outbound request failed: {0}")]
    Unavailable(String),
}

/// Cached responses live at least this long and at most [`MAX_TTL`].
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A `refresh` within this long of the last forced refresh is answered from
/// the cache, so tokens with made-up key ids cannot make us hammer an issuer.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_ENTRIES_MAX: usize = 256;

struct CacheEntry {
    response: OutboundResponse,
    fetched: Instant,
    ttl: Duration,
    /// Whether the last fetch was a forced refresh (rate-limited).
    refreshed: bool,
}

/// The per-plugin outbound client.
pub struct OutboundClient {
    plugin: String,
    allow: OutboundAllowList,
    tls: Arc<rustls::ClientConfig>,
    response_cap: usize,
    cache: Mutex<HashMap<String, CacheEntry>>,
    /// One fetch per URL at a time, so a burst of callers shares one fetch.
    in_flight: tokio::sync::Mutex<()>,
    /// Counts requests that left the host, for tests and metrics.
    sent: std::sync::atomic::AtomicU64,
}

impl OutboundClient {
    /// Creates a client for one plugin.
    pub fn new(
        plugin: &str,
        allow: OutboundAllowList,
        tls: Arc<rustls::ClientConfig>,
        response_cap: usize,
    ) -> Self {
        Self {
            plugin: plugin.to_string(),
            allow,
            tls,
            response_cap,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Mutex::new(()),
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many requests actually left the host.
    pub fn sent_count(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a request, or answers it from the cache.
    ///
    /// # Errors
    /// See [`OutboundError`]; `Denied` and `Invalid` mean nothing was sent.
    pub async fn send(
        &self,
        req: OutboundRequest,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| OutboundError::Invalid(format!("bad url `{}`: {e}", req.url)))?;
        let origin = Origin::of_uri(&uri).ok_or_else(|| {
            OutboundError::Invalid(format!("`{}` is not an absolute http(s) url", req.url))
        })?;
        let grant = self.allow.grant_for(&origin).ok_or_else(|| {
            OutboundError::Denied(format!(
                "plugin `{}` has no grant for `{origin}`",
                self.plugin
            ))
        })?;
        let method: http::Method = req
            .method
            .parse()
            .map_err(|_| OutboundError::Invalid(format!("bad method `{}`", req.method)))?;
        let cacheable = method == http::Method::GET && req.cache != CacheMode::NoStore;
        if !cacheable {
            return self
                .fetch(
                    &uri,
                    &origin,
                    grant.private,
                    method,
                    &req.headers,
                    req.body,
                    timeout,
                )
                .await;
        }
        if let Some(hit) = self.cached(&req.url, req.cache) {
            return Ok(hit);
        }
        let _one_at_a_time = tokio::time::timeout(timeout, self.in_flight.lock())
            .await
            .map_err(|_| OutboundError::Timeout)?;
        // Another caller may have fetched it while we waited.
        if let Some(hit) = self.cached(&req.url, req.cache) {
            return Ok(hit);
        }
        let response = self
            .fetch(
                &uri,
                &origin,
                grant.private,
                method,
                &req.headers,
                req.body,
                timeout,
            )
            .await?;
        if (200..300).contains(&response.status) {
            self.store(&req.url, &response, req.cache == CacheMode::Refresh);
        }
        Ok(response)
    }

    fn cached(&self, url: &str, mode: CacheMode) -> Option<OutboundResponse> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(url)?;
        let age = entry.fetched.elapsed();
        let usable = match mode {
            CacheMode::UseCache => age < entry.ttl,
            // One forced refresh per interval: the first unknown key id after
            // a rotation is fetched at once; a flood of made-up ones is not.
            CacheMode::Refresh => entry.refreshed && age < REFRESH_INTERVAL,
            CacheMode::NoStore => false,
        };
        usable.then(|| entry.response.clone())
    }

    fn store(&self, url: &str, response: &OutboundResponse, refreshed: bool) {
        let ttl = max_age(&response.headers).map_or(DEFAULT_TTL, |d| d.clamp(MIN_TTL, MAX_TTL));
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES_MAX && !cache.contains_key(url) {
                cache.retain(|_, e| e.fetched.elapsed() < e.ttl);
                if cache.len() >= CACHE_ENTRIES_MAX {
                    cache.clear();
                }
            }
            cache.insert(
                url.to_string(),
                CacheEntry {
                    response: response.clone(),
                    fetched: Instant::now(),
                    ttl,
                    refreshed,
                },
            );
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of `send`, named arguments read better than a struct"
    )]
    async fn fetch(
        &self,
        uri: &http::Uri,
        origin: &Origin,
        private_allowed: bool,
        method: http::Method,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
        // A plugin may name the `Host` itself (a signed STS request replayed
        // to a test endpoint keeps its signed host): the connection still goes
        // only to the checked address of the granted origin.
        let mut host_header = match uri.port_u16() {
            Some(port) => format!("{}:{port}", uri.host().unwrap_or_default()),
            None => uri.host().unwrap_or_default().to_string(),
        };
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if lower == "host" {
                host_header.clone_from(value);
                continue;
            }
            if matches!(
                lower.as_str(),
                "connection" | "transfer-encoding" | "content-length" | "upgrade"
            ) {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .header(http::header::HOST, host_header)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| OutboundError::Invalid(e.to_string()))?;
        let work = async {
            let addr = resolve_allowed(origin, private_allowed).await?;
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| OutboundError::Timeout)?
                .map_err(|e| OutboundError::Unavailable(format!("connect to {addr}: {e}")))?;
            self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::metrics().plugin_outbound(&self.plugin, &origin.to_string(), "sent");
            let response = if origin.scheme == "https" {
                let name = ServerName::try_from(origin.host.clone())
                    .map_err(|e| OutboundError::Invalid(format!("bad tls server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| OutboundError::Unavailable(format!("tls: {e}")))?;
                exchange(TokioIo::new(tls), request).await?
            } else {
                exchange(TokioIo::new(tcp), request).await?
            };
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, self.response_cap)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        OutboundError::TooLarge
                    } else {
                        OutboundError::Unavailable(format!("reading body: {e}"))
                    }
                })?;
            let headers = parts
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    v.to_str()
                        .ok()
                        .map(|v| (k.as_str().to_string(), v.to_string()))
                })
                .collect();
            Ok(OutboundResponse {
                status: parts.status.as_u16(),
                headers,
                body: collected.to_bytes(),
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| OutboundError::Timeout)?
    }
}

/// Resolves the host and returns the first address the policy allows. We
/// connect to exactly that address, so DNS cannot change the answer between
/// the check and the connection.
async fn resolve_allowed(
    origin: &Origin,
    private_allowed: bool,
) -> Result<SocketAddr, OutboundError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((origin.host.as_str(), origin.port))
        .await
        .map_err(|e| OutboundError::Unavailable(format!("resolving `{}`: {e}", origin.host)))?
        .collect();
    let mut refused = Vec::new();
    for addr in &addrs {
        match classify_address(addr.ip()) {
            AddressClass::Public => return Ok(*addr),
            AddressClass::Private if private_allowed => return Ok(*addr),
            AddressClass::Private => {
                refused.push(format!("{} is a private or loopback address", addr.ip()))
            }
            AddressClass::Forbidden => {
                refused.push(format!("{} is a link-local or metadata address", addr.ip()))
            }
        }
    }
    Err(OutboundError::Denied(if refused.is_empty() {
        format!("`{}` resolved to no address", origin.host)
    } else {
        format!(
            "`{origin}`: {} (grant it with `private = true` for loopback or private networks; metadata addresses are never reachable)",
            refused.join(", ")
        )
    }))
}

async fn exchange<I>(
    io: I,
    request: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, OutboundError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| OutboundError::Unavailable(format!("http handshake: {e}")))?;
    tokio::spawn(async move {
        // The connection ends when the response has been read or dropped.
        let _ = conn.await;
    });
    // Redirects are returned to the plugin as they are, never followed.
    sender
        .send_request(request)
        .await
        .map_err(|e| OutboundError::Unavailable(format!("http: {e}")))
}

fn max_age(headers: &[(String, String)]) -> Option<Duration> {
    let value = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("cache-control"))?
        .1
        .to_ascii_lowercase();
    if value.contains("no-store") || value.contains("no-cache") {
        return Some(Duration::ZERO);
    }
    value
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The TLS client configuration for outbound calls: the platform's roots.
pub fn default_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable certificates are skipped; with no roots at all every TLS
    // connection fails closed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
