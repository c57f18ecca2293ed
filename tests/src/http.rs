//! A small HTTP/1.1 client over a fresh TCP connection per request (plain `http://` only), for
//! talking to the peers and to the proxy under test.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
pub use http::Method;
use http::{HeaderMap, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Per-request limit on connect + request + whole response.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A response with its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON (status {}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// A header's value, if present and valid UTF-8 (the first one if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Response> {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// `GET url` with extra headers, e.g. `[("authorization", "Bearer ...")]`.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Result<Response> {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// `POST url` with a JSON body.
pub async fn post_json(url: &str, body: &Value) -> Result<Response> {
    send(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await
}

/// Sends one request on a new connection (`connection: close`) and reads the whole response.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response> {
    let body = body.into();
    tokio::time::timeout(TIMEOUT, send_inner(method.clone(), url, headers, body))
        .await
        .map_err(|_| anyhow!("{method} {url}: no response within {}s", TIMEOUT.as_secs()))?
        .with_context(|| format!("{method} {url}"))
}

async fn send_inner(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response> {
    let uri: Uri = url.parse().context("invalid URL")?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported");
    }
    let authority = uri.authority().context("URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());

    let stream = TcpStream::connect((authority.host(), port))
        .await
        .context("connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    let conn = tokio::spawn(conn);

    let mut builder = Request::builder().method(method).uri(path);
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if !has_host {
        builder = builder.header(header::HOST, authority.as_str());
    }
    for (name, value) in headers {
        builder = builder.header(*name, HeaderValue::from_str(value)?);
    }
    builder = builder.header(header::CONNECTION, "close");
    let request = builder.body(Full::new(body)).context("building request")?;

    let response = sender.send_request(request).await.context("sending")?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.context("reading body")?.to_bytes();
    drop(sender);
    let _ = conn.await;
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
