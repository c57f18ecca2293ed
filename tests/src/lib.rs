//! Shared harness for the integration tests: real peers (a local OIDC issuer built on
//! `oauth2-mock-server`, an echo upstream), a small HTTP/1.1 client, and paths into the repo.
//!
//! The peers are Node.js programs under `tests/peers/`; `scripts/ensure-peers` installs what they
//! need. Every peer binds 127.0.0.1 only, and is killed when its handle is dropped (and exits on
//! its own when its stdin closes, so a crashed test leaves no orphan).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use intentgate_tests::{EchoUpstream, OidcIssuer, TokenKind};
//! let issuer = OidcIssuer::start().await?;
//! let upstream = EchoUpstream::start().await?;
//! let token = issuer.mint(TokenKind::Valid, "quickstart").await?;
//! # let _ = (token, upstream.url()); Ok(()) }
//! ```

pub mod gateway;
pub mod grpc;
pub mod http;
pub mod jwt;
mod peer;
pub mod peers;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

pub use peers::{EchoUpstream, IssuerStats, MintRequest, OidcIssuer, TokenKind};

/// Today's UTC date (`YYYY-MM-DD`), e.g. for a trust anchor reviewed today.
pub fn today() -> String {
    days_from_today(0)
}

/// The UTC date `days` days from today (negative: in the past).
pub fn days_from_today(days: i64) -> String {
    intentgate::clock::format_date((intentgate::clock::now_unix() / 86_400) as i64 + days)
}

/// Runs a test body, failing it if it takes longer than `limit` (no test may hang CI).
///
/// # Errors
/// The body's error, or that it did not finish in time.
pub async fn bounded(
    limit: std::time::Duration,
    test: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(limit, test)
        .await
        .map_err(|_| anyhow::anyhow!("the test did not finish within {limit:?}"))?
}

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The built plugin component `intentgate_<name>.wasm` (e.g. `plugin_path("oidc")`).
///
/// # Panics
///
/// If the plugin is not built, with a message that says how to build it.
#[allow(
    clippy::panic,
    reason = "a test precondition; the message says what to run"
)]
pub fn plugin_path(name: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/target/components")
        .join(format!("intentgate_{name}.wasm"));
    if !path.is_file() {
        panic!(
            "plugin `{name}` is not built: run scripts/build-plugins (looked for {})",
            path.display()
        );
    }
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it). Another process can
/// take it before you bind it; prefer letting a server bind port 0 and report its port.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
