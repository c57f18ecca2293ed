//! Runs the real `intentgate` binary with a config written into a temporary
//! folder, and reads its audit records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::repo_root;

/// The `intentgate` binary, built on demand so `cargo test -p intentgate-tests` works alone.
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("test executable path")?;
    // target/<profile>/deps/<test> -> target/<profile>/intentgate
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("target folder")?;
    let path = profile_dir.join("intentgate");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "intentgate",
            "--bin",
            "intentgate",
        ])
        .current_dir(repo_root())
        .status()
        .context("running cargo build for the intentgate binary")?;
    if !status.success() || !path.is_file() {
        bail!(
            "could not build the intentgate binary at {}",
            path.display()
        );
    }
    Ok(path)
}

/// A folder that is removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh folder under the system temp dir.
    pub fn new(tag: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("intentgate-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file inside it (creating folders) and returns its path.
    pub fn write(&self, relative: &str, text: &str) -> Result<PathBuf> {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `intentgate run`, stopped with SIGTERM on drop.
pub struct Gateway {
    child: Child,
    audit: PathBuf,
    /// The listener's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl Gateway {
    /// Starts `intentgate run --config <config>`; `audit` is the audit file the
    /// config names and `port` the listener's port. Waits until it accepts.
    pub async fn start(
        config: &Path,
        audit: &Path,
        port: u16,
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let mut command = Command::new(binary()?);
        let log = audit.with_extension("log");
        command
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("creating the intentgate log file")?);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command.spawn().context("starting intentgate")?;
        let mut gateway = Self {
            child,
            audit: audit.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(gateway);
            }
            if let Some(status) = gateway.child.try_wait()? {
                bail!("intentgate exited before it was ready: {status}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("intentgate did not start listening on port {port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What intentgate wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.audit.with_extension("log")).unwrap_or_default()
    }

    /// Every audit record written so far. A last line without its newline
    /// is still being written and is left for the next read.
    pub fn audit_records(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| {
                serde_json::from_str(l).with_context(|| format!("audit line is not JSON: {l}"))
            })
            .collect()
    }

    /// The audit record with this request ID, waiting briefly for the writer.
    pub async fn audit_for(&self, request_id: &str) -> Result<Value> {
        let started = Instant::now();
        loop {
            if let Some(r) = self
                .audit_records()?
                .into_iter()
                .find(|r| r["request_id"] == request_id)
            {
                return Ok(r);
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("no audit record for request {request_id}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGHUP (reload policies and trust anchors).
    pub fn hangup(&self) -> Result<()> {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -HUP failed: {status}");
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > Duration::from_secs(40) {
                let _ = self.child.kill();
                bail!("intentgate did not exit within 40 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

/// The config most end-to-end tests use: the OIDC identity plugin (issuer on
/// loopback), the HTTP connector, `policies/` next to the config, one plain
/// listener named `it`, audit records in `audit.jsonl`.
pub struct OidcHttpConfig<'a> {
    /// The issuer URL (also the trust anchor).
    pub issuer: &'a str,
    /// The upstream URL.
    pub upstream: &'a str,
    /// The listener port.
    pub port: u16,
    /// The trust anchor's review date, `YYYY-MM-DD`.
    pub reviewed: String,
    /// Extra top-level tables (e.g. `[admin]`), placed before the plugins.
    pub extra_tables: String,
    /// Extra keys for `[policy]` (e.g. `watch = false`).
    pub policy_keys: String,
    /// Extra keys for the listener (e.g. `tls = {...}`).
    pub listener_keys: String,
}

impl<'a> OidcHttpConfig<'a> {
    /// The defaults: reviewed today, nothing extra.
    pub fn new(issuer: &'a str, upstream: &'a str, port: u16) -> Self {
        let today = crate::today();
        Self {
            issuer,
            upstream,
            port,
            reviewed: today,
            extra_tables: String::new(),
            policy_keys: String::new(),
            listener_keys: String::new(),
        }
    }

    /// The config text.
    pub fn render(&self) -> String {
        format!(
            r#"
[audit]
output = "audit.jsonl"
{extra_tables}
[[identity]]
name = "oidc"
plugin = "{oidc}"
outbound = [{{ origin = "{issuer}", private = true }}]
config = {{ issuer = "{issuer}", audiences = ["it"] }}

[[trust_anchor]]
id = "{issuer}"
provider = "oidc"
reviewed = "{reviewed}"

[[connector]]
name = "http"
plugin = "{http}"

[policy]
policies = ["policies"]
{policy_keys}

[[listener]]
name = "it"
protocol = "http"
bind = "127.0.0.1:{port}"
identity = "oidc"
connector = "http"
credential = {{ header = "authorization", scheme = "Bearer" }}
upstream = "{upstream}"
{listener_keys}
"#,
            extra_tables = self.extra_tables,
            oidc = crate::plugin_path("oidc").display(),
            http = crate::plugin_path("http").display(),
            issuer = self.issuer,
            reviewed = self.reviewed,
            policy_keys = self.policy_keys,
            port = self.port,
            upstream = self.upstream,
            listener_keys = self.listener_keys,
        )
    }
}
