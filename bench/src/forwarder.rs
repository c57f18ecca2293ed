//! The bare pass-through forwarder: the same hyper stack as intentgate (hyper-util's auto server
//! builder downstream, one `hyper::client::conn::http2` connection upstream) and nothing else.
//! The request body goes upstream as the raw HTTP/2 body, and the response body and trailers stream
//! back untouched: no gRPC re-framing, identity, policy or audit. Its throughput is the ceiling
//! for any proxy hop built on this stack.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// The response body: upstream's, untouched, or empty for a locally made error.
pub type Body = Either<Incoming, Empty<Bytes>>;

/// The one shared upstream HTTP/2 connection, re-dialled if it closes.
pub struct Upstream {
    authority: Authority,
    conn: Mutex<Option<SendRequest<Incoming>>>,
}

impl Upstream {
    /// `url` is `http://host:port` (h2c with prior knowledge).
    pub fn new(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("bad upstream {url:?}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            bail!("upstream {url} must be http:// (h2c)");
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow!("upstream {url} has no host:port"))?;
        Ok(Self {
            authority,
            conn: Mutex::new(None),
        })
    }

    /// Dials the upstream connection now, so a wrong address fails at start-up.
    pub async fn connect(&self) -> Result<()> {
        self.sender().await.map(|_| ())
    }

    async fn sender(&self) -> Result<SendRequest<Incoming>> {
        if let Some(send) = self.current() {
            return Ok(send);
        }
        // Two requests racing here may both dial; the later connection wins and the other
        // finishes its streams and closes. Only happens at start or after upstream went away.
        let tcp = TcpStream::connect(self.authority.as_str())
            .await
            .with_context(|| format!("cannot connect to upstream {}", self.authority))?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("upstream connection: {e}");
            }
        });
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(send.clone());
        }
        Ok(send)
    }

    fn current(&self) -> Option<SendRequest<Incoming>> {
        let slot = self.conn.lock().ok()?;
        slot.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// Forwards one request; any failure to reach upstream becomes gRPC UNAVAILABLE.
    pub async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        match self.try_forward(req).await {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => unavailable(&e.to_string()),
        }
    }

    async fn try_forward(&self, mut req: Request<Incoming>) -> Result<Response<Incoming>> {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        *req.uri_mut() = Uri::from_parts(parts)?;
        let mut send = self.sender().await?;
        Ok(send.send_request(req).await?)
    }
}

/// A trailers-only gRPC error response (HTTP 200, status in the headers).
fn unavailable(message: &str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Empty::new()));
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    // grpc-message is percent-encoded; keep it to a safe subset rather than encoding here.
    let safe: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("forwarder: {safe}")) {
        headers.insert("grpc-message", v);
    }
    resp
}

/// Serves the forwarder on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, upstream: Arc<Upstream>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = crate::net::accept(&listener).await;
        let upstream = upstream.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let upstream = upstream.clone();
                async move { Ok::<_, std::convert::Infallible>(upstream.forward(req).await) }
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                let text = e.to_string();
                if !text.contains("connection reset") && !text.contains("connection closed") {
                    eprintln!("forwarder connection: {text}");
                }
            }
        });
    }
}
