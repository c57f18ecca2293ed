//! `spanner-standin`: the fast in-repo Spanner stand-in (see `intentgate_bench::standin`).
//!
//!     spanner-standin [--listen 127.0.0.1:0] [--workers N]
//!
//! Prints `LISTENING <addr>` on stdout. `STANDIN_ABORT_COMMITS=N` aborts the first N commits.
//! On SIGUSR1 it prints `STATS ok=<n> errors=<n> sessions=<n>` on stderr, so a harness can check
//! how many RPCs really succeeded (h2load counts HTTP 200s, and gRPC errors are HTTP 200s too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::Parser;
use intentgate_bench::{net, standin};

/// A fast Spanner stand-in for load tests.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads; 1 is a current-thread runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let aborts = match std::env::var("STANDIN_ABORT_COMMITS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("STANDIN_ABORT_COMMITS={v:?} is not a count"))?,
        Err(_) => 0,
    };
    let standin = Arc::new(standin::Standin::new(aborts));
    net::runtime(args.workers)?.block_on(async move {
        let listener = net::bind(args.listen).await?;
        tokio::spawn(report_on_usr1(standin.clone()));
        standin::serve(listener, standin).await;
        Ok(())
    })
}

async fn report_on_usr1(standin: Arc<standin::Standin>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    while usr1.recv().await.is_some() {
        eprintln!(
            "STATS ok={} errors={} sessions={}",
            standin.ok.load(Ordering::Relaxed),
            standin.errors.load(Ordering::Relaxed),
            standin.session_count()
        );
    }
    Ok(())
}
