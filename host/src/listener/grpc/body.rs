//! Response bodies of the gRPC listener.
//!
//! [`Relayed`] streams upstream's body to the caller frame by frame (HTTP/2
//! flow control gives backpressure both ways) and writes the call's audit
//! record when the stream ends, with the final `grpc-status` from the
//! trailers; [`Buffered`] replays a response the proxy had to read whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::audit::{AuditRecord, AuditSink};

/// The listener's response body type.
pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// The `grpc-status` in a header or trailer map, if any.
pub fn status_in(map: &HeaderMap) -> Option<i32> {
    map.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Upstream's body, passed through, with the audit record written at its end.
pub struct Relayed {
    inner: Incoming,
    /// A frame read ahead (to look for a retryable status) and not yet sent.
    first: Option<Frame<Bytes>>,
    record: Option<AuditRecord>,
    sink: AuditSink,
}

impl Relayed {
    /// Wraps `inner`; `first` is a frame already read from it.
    pub fn new(
        inner: Incoming,
        first: Option<Frame<Bytes>>,
        record: AuditRecord,
        sink: AuditSink,
    ) -> Self {
        let mut relayed = Self {
            inner,
            first: None,
            record: Some(record),
            sink,
        };
        if let Some(frame) = &first {
            relayed.saw(frame);
        }
        relayed.first = first;
        relayed
    }

    fn saw(&mut self, frame: &Frame<Bytes>) {
        if let (Some(trailers), Some(record)) = (frame.trailers_ref(), self.record.as_mut()) {
            record.grpc_status = status_in(trailers);
            // Trailers end the stream; the server may not poll again.
            self.finish(None);
        }
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(mut record) = self.record.take() {
            if let Some(e) = error {
                record.errors.push(e);
            }
            self.sink.record_detached(record);
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.saw(&frame);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish(Some(format!("upstream stream failed: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if self.is_end_stream() {
            // Trailers-only answers are complete before anyone reads them.
            self.finish(None);
        } else {
            // Dropped before the end: the caller went away (or the server
            // shut the stream); the record says so rather than going missing.
            self.finish(Some(
                "the caller's stream ended before upstream's response did".into(),
            ));
        }
    }
}

/// A response read whole: its data, then its trailers.
pub struct Buffered {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Buffered {
    /// A body of `data` followed by `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl Body for Buffered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
