//! `grpc-forwarder`: the bare HTTP/2 pass-through hop (see `intentgate_bench::forwarder`).
//!
//!     grpc-forwarder --upstream http://127.0.0.1:P [--listen 127.0.0.1:0] [--workers 1]
//!
//! Prints `LISTENING <addr>` on stdout once the upstream connection is up.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;
use intentgate_bench::{forwarder, net};

/// The limit for a proxy hop: forwards raw HTTP/2 over one shared upstream connection.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream, `http://host:port` (h2c).
    #[arg(long)]
    upstream: String,
    /// Runtime worker threads; 1 (the default) is a current-thread runtime, the cheapest shape
    /// on a 2-core box and the one intentgate is benchmarked with.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let upstream = Arc::new(forwarder::Upstream::new(&args.upstream)?);
    net::runtime(args.workers)?.block_on(async move {
        upstream.connect().await?;
        let listener = net::bind(args.listen).await?;
        forwarder::serve(listener, upstream).await;
        Ok(())
    })
}
