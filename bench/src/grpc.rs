//! gRPC framing and a minimal unary client over one hyper HTTP/2 connection.
//!
//! `mkreq` and the tests use this instead of a tonic `Channel` to keep tonic's transport stack
//! out of the crate's dependencies: a unary call is one frame out and one frame plus trailers back.

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpStream;

/// The path prefix of every Spanner RPC.
pub const SPANNER: &str = "/google.spanner.v1.Spanner/";

/// Frames one message as gRPC sends it: an uncompressed flag byte, a big-endian length, the bytes.
pub fn frame(msg: &impl Message) -> Result<Bytes> {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).context("message too large for one gRPC frame")?);
    msg.encode(&mut buf)?;
    Ok(buf.freeze())
}

/// Returns the one uncompressed message in a unary gRPC response body.
pub fn unframe(body: &[u8]) -> Result<&[u8]> {
    let (header, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| anyhow!("response body of {} bytes has no gRPC frame", body.len()))?;
    if header[0] != 0 {
        bail!(
            "compressed gRPC frame (flag {}) is not supported",
            header[0]
        );
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if rest.len() != len {
        bail!("gRPC frame says {len} bytes, body has {}", rest.len());
    }
    Ok(rest)
}

/// A failed call: the gRPC status the server (or a proxy) answered with.
#[derive(Debug)]
pub struct CallError {
    /// The status, with `details()` holding any encoded `google.rpc.Status`.
    pub status: tonic::Status,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "grpc-status {} ({:?}): {}",
            self.status.code() as i32,
            self.status.code(),
            self.status.message()
        )
    }
}

impl std::error::Error for CallError {}

/// A request body of unknown length, so hyper sends no `content-length`: gRPC clients (tonic,
/// grpc-go, the Spanner client libraries) stream their bodies and never send one.
type GrpcBody = StreamBody<tokio_stream::Once<Result<Frame<Bytes>, std::convert::Infallible>>>;

/// One HTTP/2 (h2c, prior knowledge) connection to a gRPC endpoint.
pub struct Client {
    send: SendRequest<GrpcBody>,
    base: Uri,
}

impl Client {
    /// Connects to `endpoint`, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let base: Uri = endpoint
            .parse()
            .with_context(|| format!("bad endpoint {endpoint:?}"))?;
        if base.scheme_str() != Some("http") {
            bail!("endpoint {endpoint} must be http:// (h2c)");
        }
        let authority = base
            .authority()
            .ok_or_else(|| anyhow!("endpoint {endpoint} has no host:port"))?
            .to_string();
        let tcp = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .with_context(|| format!("HTTP/2 handshake with {authority} failed"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("connection to {authority}: {e}");
            }
        });
        Ok(Self { send, base })
    }

    /// Calls `/google.spanner.v1.Spanner/<method>`, optionally with an `authorization` value.
    /// The outer error is transport or protocol trouble; a non-OK status is a [`CallError`]
    /// (downcast it to inspect the code and details).
    pub async fn spanner<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &str,
        req: &Req,
        authorization: Option<&str>,
    ) -> Result<Resp> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.base.authority().map_or("", |a| a.as_str()))
            .path_and_query(format!("{SPANNER}{method}"))
            .build()?;
        let mut request = Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(StreamBody::new(tokio_stream::once(Ok(Frame::data(frame(
                req,
            )?)))))?;
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert("authorization", HeaderValue::from_str(value)?);
        }
        let response = self.send.send_request(request).await?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            bail!("{method}: HTTP status {}", parts.status);
        }
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        let bytes = collected.to_bytes();
        // A trailers-only response carries grpc-status in the headers.
        let status = trailers
            .as_ref()
            .and_then(tonic::Status::from_header_map)
            .or_else(|| tonic::Status::from_header_map(&parts.headers))
            .ok_or_else(|| anyhow!("{method}: response has no grpc-status"))?;
        if status.code() != tonic::Code::Ok {
            return Err(CallError { status }.into());
        }
        Ok(Resp::decode(unframe(&bytes)?)?)
    }
}
