//! A child process that prints one JSON "ready" line on stdout and is killed on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// How long a peer may take to print its ready line (a cold `node` start is well under 1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Node.js binary: `$INTENTGATE_NODE`, else `node` on `PATH`.
fn node() -> std::ffi::OsString {
    std::env::var_os("INTENTGATE_NODE").unwrap_or_else(|| "node".into())
}

pub(crate) struct PeerProcess {
    child: Child,
    // Held open: the peer exits when its stdin closes, i.e. when this handle (or the whole
    // test process) goes away.
    _stdin: Option<ChildStdin>,
}

impl PeerProcess {
    /// Runs `node <script> <args>` and waits for the JSON line it prints when ready.
    pub(crate) async fn spawn<I, S>(
        name: &'static str,
        script: &Path,
        args: I,
    ) -> Result<(Self, Value)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(node())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PEER_WATCH_STDIN", "1")
            .spawn()
            .with_context(|| {
                format!(
                    "starting the {name} peer (`node {}`); is Node.js installed? run scripts/ensure-peers",
                    script.display()
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("peer stdout was not piped")?;
        let stderr = child.stderr.take().context("peer stderr was not piped")?;

        // Forward the peer's stderr to ours (the test harness captures it per test) and keep a
        // copy for the error message if the peer dies before it is ready.
        let stderr_copy = Arc::new(Mutex::new(String::new()));
        let copy = Arc::clone(&stderr_copy);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                if let Ok(mut buf) = copy.lock()
                    && buf.len() < 16 * 1024
                {
                    buf.push_str(&line);
                    buf.push('\n');
                }
            }
        });

        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining so the peer never blocks on a full pipe.
            let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
        });

        let mut peer = Self {
            child,
            _stdin: stdin,
        };
        let line = match tokio::time::timeout(READY_TIMEOUT, rx).await {
            Ok(Ok(Ok(line))) if !line.trim().is_empty() => line,
            Ok(_) => {
                // stdout closed without a line: the peer died. Give stderr a moment to drain.
                let status = peer.wait_briefly();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let stderr = stderr_copy.lock().map(|s| s.clone()).unwrap_or_default();
                bail!("the {name} peer exited before it was ready ({status}); stderr:\n{stderr}");
            }
            Err(_) => bail!(
                "the {name} peer printed no ready line within {}s",
                READY_TIMEOUT.as_secs()
            ),
        };
        let ready: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the {name} peer's ready line is not JSON: {line:?}"))?;
        Ok((peer, ready))
    }

    fn wait_briefly(&mut self) -> String {
        for _ in 0..20 {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => std::thread::sleep(Duration::from_millis(25)),
                Err(err) => return err.to_string(),
            }
        }
        "still running".to_owned()
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads a string field of a peer's ready line.
pub(crate) fn ready_field(ready: &Value, peer: &str, field: &str) -> Result<String> {
    ready
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the {peer} peer's ready line has no string `{field}`: {ready}"))
}
