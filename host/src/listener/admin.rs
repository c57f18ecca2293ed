//! The admin listener: `/healthz` (the process is alive), `/readyz` (every
//! listener is bound and the policy set is loaded, and the process is not
//! draining) and `/metrics` (Prometheus text). Bind it to loopback or a
//! private interface; it carries no secrets but is not for the public.
//!
//! It serves until the process exits: while the proxy listeners drain after
//! SIGTERM, `/readyz` answers 503 `draining` (so load balancers stop sending
//! new work) and `/healthz` still answers 200.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::metrics::Gauge;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading plugins, binding listeners.
    Starting,
    /// Every listener serves.
    Serving,
    /// Shutdown began: listeners closed, calls in flight finishing.
    Draining,
}

/// Readiness, moved forward by the server: starting, serving, draining.
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Self(AtomicU8::new(Phase::Starting as u8))
    }
}

impl Readiness {
    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    /// The current phase.
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            x if x == Phase::Serving as u8 => Phase::Serving,
            x if x == Phase::Draining as u8 => Phase::Draining,
            _ => Phase::Starting,
        }
    }
}

/// Computes the gauges `/metrics` reports, when it is scraped.
pub type GaugeSource = Arc<dyn Fn() -> Vec<Gauge> + Send + Sync>;

fn answer(
    req: &Request<Incoming>,
    ready: &Readiness,
    gauges: &GaugeSource,
) -> Response<Full<Bytes>> {
    let (status, body) = match (req.uri().path(), ready.get()) {
        ("/healthz", _) => (StatusCode::OK, "ok\n"),
        ("/readyz", Phase::Serving) => (StatusCode::OK, "ready\n"),
        ("/readyz", Phase::Starting) => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        ("/readyz", Phase::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down, send no new work\n",
        ),
        ("/metrics", phase) => {
            let mut scraped = gauges();
            scraped.push(Gauge {
                name: "intentgate_ready",
                help: "1 while every listener serves; 0 while starting and while draining.",
                labels: Vec::new(),
                value: if phase == Phase::Serving { 1.0 } else { 0.0 },
            });
            let text = crate::metrics::metrics().render_with(&scraped);
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return response;
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Serves the admin endpoints until the task is dropped (the process exits).
pub async fn serve(listener: TcpListener, ready: Arc<Readiness>, gauges: GaugeSource) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: do not spin.
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ready = ready.clone();
        let gauges = gauges.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = answer(&req, &ready, &gauges);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
