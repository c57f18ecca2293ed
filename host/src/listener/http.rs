//! The HTTP listener: a reverse proxy to one upstream.
//!
//! The caller's credential header is stripped before anything else sees the
//! request; the upstream credential is injected by the host; the caller and
//! the upstream both receive the request ID as `x-request-id`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::audit::{AuditRecord, AuditSink};
use crate::clock;
use crate::gate::{Attempt, DenyKind, Gate, Verdict};
use crate::plugin::CallInput;

/// The request ID header, to the caller and to the upstream.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

type Body = BoxBody<Bytes, hyper::Error>;
type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>;

/// One HTTP listener's proxy.
pub struct HttpProxy {
    gate: Gate,
    credential_header: HeaderName,
    credential_scheme: String,
    upstream: http::Uri,
    upstream_credential: crate::upstream_auth::UpstreamAuth,
    client: UpstreamClient,
    audit: AuditSink,
    tls: bool,
    ambient: Option<crate::ambient::AmbientCredential>,
}

impl HttpProxy {
    /// Builds the proxy.
    ///
    /// # Errors
    /// When the upstream is `https://` and the system's TLS roots cannot be
    /// loaded (none found). An `http://` upstream needs no roots.
    pub fn new(
        gate: Gate,
        credential_header: HeaderName,
        credential_scheme: &str,
        upstream: http::Uri,
        upstream_credential: crate::upstream_auth::UpstreamAuth,
        audit: AuditSink,
        tls: bool,
    ) -> Result<Self, String> {
        let connector = if upstream.scheme() == Some(&http::uri::Scheme::HTTPS) {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| format!("cannot load TLS roots for the upstream: {e}"))?
                .https_only()
                .enable_http1()
                .build()
        } else {
            // Plain HTTP: TLS is never used, so no roots are loaded (a
            // system without a CA bundle must still proxy to http://). An
            // empty root store fails closed should TLS ever be attempted.
            let no_roots = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(no_roots)
                .https_or_http()
                .enable_http1()
                .build()
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            gate,
            credential_header,
            credential_scheme: credential_scheme.to_string(),
            upstream,
            upstream_credential,
            client,
            audit,
            tls,
            ambient: None,
        })
    }

    /// Uses the workload's own credential for callers that send none
    /// (sidecar shape; the config allows it on loopback listeners only).
    #[must_use]
    pub fn with_ambient(mut self, ambient: Option<crate::ambient::AmbientCredential>) -> Self {
        self.ambient = ambient;
        self
    }

    /// Handles one request: decide, forward or refuse, audit.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, hyper::Error> {
        let started = Instant::now();
        let request_id = uuid::Uuid::now_v7().to_string();
        let (secs, micros) = clock::now();
        let mut record = AuditRecord {
            kind: "audit",
            time: clock::format_rfc3339(secs, micros),
            request_id: request_id.clone(),
            listener: self.gate.listener().to_string(),
            peer: peer.to_string(),
            protocol: "http".into(),
            method: req.method().to_string(),
            // The query may carry secrets; the audit keeps the path only.
            path: req.uri().path().to_string(),
            decision: "deny",
            ..Default::default()
        };
        // Take the credential out before anything else sees the request.
        let credential = req
            .headers_mut()
            .remove(&self.credential_header)
            .and_then(|v| super::credential_from(&v, &self.credential_scheme));
        let credential = match (credential, &self.ambient) {
            (Some(c), _) => Some(c),
            (None, Some(ambient)) => {
                record.ambient_credential = true;
                ambient.get().await.map(|a| a.to_vec())
            }
            (None, None) => None,
        };
        record.caller_request_id = req
            .headers_mut()
            .remove(&REQUEST_ID)
            .and_then(|v| super::caller_request_id(&v));
        let call = CallInput {
            protocol: "http".into(),
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
            headers: req
                .headers()
                .iter()
                .filter_map(|(k, v)| {
                    v.to_str()
                        .ok()
                        .map(|v| (k.as_str().to_string(), v.to_string()))
                })
                .collect(),
            body: Vec::new(),
        };
        let attempt = Attempt {
            request_id: &request_id,
            peer,
            tls: self.tls,
            credential: credential.as_deref(),
            call: &call,
        };
        let verdict = self.gate.decide(&attempt, &mut record).await;
        let response = match verdict {
            Verdict::Deny { kind, reason } => refusal(kind, &reason, &request_id),
            Verdict::Allow { binding, .. } => {
                if binding.as_ref().is_some_and(|b| !b.append_body.is_empty()) {
                    record.decision = "error";
                    record.reason = "the connector asked to rewrite the body, which the HTTP listener does not do".into();
                    refusal(DenyKind::Failed, &record.reason, &request_id)
                } else {
                    self.forward(req, binding, &request_id, &mut record).await
                }
            }
        };
        record.latency_us = started.elapsed().as_micros() as u64;
        self.audit.record(record).await;
        Ok(response)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        binding: Option<crate::plugin::Binding>,
        request_id: &str,
        record: &mut AuditRecord,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let base = self.upstream.path().trim_end_matches('/');
        let uri = format!(
            "{}://{}{base}{path}",
            self.upstream.scheme_str().unwrap_or("http"),
            self.upstream.authority().map_or("", |a| a.as_str())
        );
        parts.uri = match uri.parse() {
            Ok(uri) => uri,
            Err(e) => {
                record.decision = "error";
                record.reason = format!("cannot build the upstream URL: {e}");
                return refusal(DenyKind::Failed, &record.reason, request_id);
            }
        };
        parts.version = http::Version::HTTP_11;
        super::strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(http::header::HOST);
        if let Ok(value) = HeaderValue::from_str(request_id) {
            parts.headers.insert(REQUEST_ID, value);
        }
        self.upstream_credential.apply(&mut parts.headers);
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
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                record.upstream_status = Some(response.status().as_u16());
                let (mut parts, body) = response.into_parts();
                super::strip_hop_by_hop(&mut parts.headers);
                if let Ok(value) = HeaderValue::from_str(request_id) {
                    parts.headers.insert(REQUEST_ID, value);
                }
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                let message = format!("upstream request failed: {e}");
                record.errors.push(message.clone());
                record.reason = format!("{}; {message}", record.reason);
                json_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    &message,
                    request_id,
                )
            }
        }
    }
}

/// The caller learns the policy reason for a 403 and what was malformed for a
/// 400 (both about its own request); why a credential failed or which plugin
/// broke could help an attacker or leak configuration, so those say only
/// where to look: the audit record under the request ID.
fn refusal(kind: DenyKind, reason: &str, request_id: &str) -> Response<Body> {
    let (status, error, shown) = match kind {
        DenyKind::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "authentication failed; the audit record for this request ID says why",
        ),
        DenyKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden", reason),
        DenyKind::Malformed => (StatusCode::BAD_REQUEST, "malformed", reason),
        DenyKind::NotFound => (StatusCode::NOT_FOUND, "not_found", reason),
        DenyKind::Failed | DenyKind::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the gate could not decide this request and denied it; the audit record for this request ID says why",
        ),
    };
    json_response(status, error, shown, request_id)
}

fn json_response(
    status: StatusCode,
    error: &str,
    reason: &str,
    request_id: &str,
) -> Response<Body> {
    let body = serde_json::json!({ "error": error, "reason": reason, "request_id": request_id })
        .to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
