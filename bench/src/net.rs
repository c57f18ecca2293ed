//! Runtime and listener set-up shared by the servers.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

/// Builds the tokio runtime. One worker means a current-thread runtime: on the 2-core benchmark
/// box that is the cheapest shape per request (no cross-thread wake-ups or work stealing).
pub fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// Binds `addr` and prints `LISTENING <addr>` on stdout (flushed), so a harness can bind port 0
/// and read back the real port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {local}")?;
    out.flush()?;
    Ok(listener)
}

/// Accepts one connection with TCP_NODELAY set (small gRPC frames must not wait for Nagle).
/// Accept errors such as EMFILE are reported and retried after a short pause rather than ending
/// the server in the middle of a run.
pub async fn accept(listener: &TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    eprintln!("set_nodelay: {e}");
                }
                return stream;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
