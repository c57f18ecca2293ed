//! A fast, stateful Spanner stand-in (`google.spanner.v1.Spanner`) for load tests and end-to-end
//! checks. Messages come from `googleapis-tonic-google-spanner-v1`; that crate ships no server,
//! so requests are routed here by path and decoded/encoded by tonic's `server::Grpc` with the
//! prost codec, served by hyper's HTTP/2 connection directly (no tonic transport or router).

mod sql;
mod state;

use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;
use tonic::Status;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};

pub use state::Standin;

use crate::grpc::SPANNER;

/// Serves `standin` on `listener` until the task is dropped. HTTP/2 only (gRPC is h2c here), with
/// hyper's default settings (200 concurrent streams per connection), like a default tonic server.
pub async fn serve(listener: TcpListener, standin: Arc<Standin>) {
    loop {
        let stream = crate::net::accept(&listener).await;
        let standin = standin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let standin = standin.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&standin, req).await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                // Clients (h2load) often just close the socket at the end of a run.
                if !is_disconnect(&e) {
                    eprintln!("stand-in connection: {e}");
                }
            }
        });
    }
}

fn is_disconnect(e: &hyper::Error) -> bool {
    e.is_incomplete_message() || e.is_canceled() || e.to_string().contains("connection reset")
}

/// Dispatches one request by its `/google.spanner.v1.Spanner/<Method>` path.
pub async fn route(
    st: &Standin,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let Some(method) = req.uri().path().strip_prefix(SPANNER) else {
        return count(
            st,
            Status::unimplemented(format!("unknown service in {}", req.uri())),
        );
    };
    match method {
        // The benchmark's hot path first.
        "ExecuteSql" => unary(st, req, move |r| st.execute_sql(r)).await,
        "ExecuteStreamingSql" => streaming(st, req, move |r| st.execute_streaming_sql(r)).await,
        "CreateSession" => unary(st, req, move |r| st.create_session(r)).await,
        "BatchCreateSessions" => unary(st, req, move |r| st.batch_create_sessions(r)).await,
        "GetSession" => unary(st, req, move |r| st.get_session(r)).await,
        "DeleteSession" => unary(st, req, move |r| st.delete_session(r)).await,
        "BeginTransaction" => unary(st, req, move |r| st.begin_transaction(r)).await,
        "Commit" => unary(st, req, move |r| st.commit(r)).await,
        "Rollback" => unary(st, req, move |r| st.rollback(r)).await,
        other => count(
            st,
            Status::unimplemented(format!("the stand-in does not implement {other}")),
        ),
    }
}

fn count(st: &Standin, status: Status) -> http::Response<tonic::body::Body> {
    st.errors.fetch_add(1, Ordering::Relaxed);
    status.into_http()
}

/// A synchronous handler as a tonic unary or server-streaming service; it also counts outcomes.
struct Handler<'a, F> {
    f: F,
    st: &'a Standin,
}

impl<F> Handler<'_, F> {
    fn tally<T>(&self, r: Result<T, Status>) -> Result<tonic::Response<T>, Status> {
        let counter = if r.is_ok() {
            &self.st.ok
        } else {
            &self.st.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r.map(tonic::Response::new)
    }
}

impl<Req, Resp, F> UnaryService<Req> for Handler<'_, F>
where
    F: FnMut(Req) -> Result<Resp, Status>,
{
    type Response = Resp;
    type Future = Ready<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let r = (self.f)(request.into_inner());
        ready(self.tally(r))
    }
}

/// A one-message server stream: enough for `ExecuteStreamingSql` with small results.
struct OneMessage<'a, F>(Handler<'a, F>);

impl<Req, Resp, F> ServerStreamingService<Req> for OneMessage<'_, F>
where
    F: FnMut(Req) -> Result<Resp, Status>,
    Resp: Send + 'static,
{
    type Response = Resp;
    type ResponseStream = tokio_stream::Once<Result<Resp, Status>>;
    type Future = Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let r = (self.0.f)(request.into_inner()).map(|m| tokio_stream::once(Ok(m)));
        ready(self.0.tally(r))
    }
}

async fn unary<Req, Resp, F>(
    st: &Standin,
    req: http::Request<Incoming>,
    f: F,
) -> http::Response<tonic::body::Body>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: FnMut(Req) -> Result<Resp, Status>,
{
    let handler = Handler { f, st };
    Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::new())
        .unary(handler, req)
        .await
}

async fn streaming<Req, Resp, F>(
    st: &Standin,
    req: http::Request<Incoming>,
    f: F,
) -> http::Response<tonic::body::Body>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: FnMut(Req) -> Result<Resp, Status>,
{
    let handler = OneMessage(Handler { f, st });
    Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::new())
        .server_streaming(handler, req)
        .await
}
