//! The workload's own credential, for sidecars: a caller on loopback that
//! sends no credential is the workload itself, so the listener verifies
//! the workload's credential instead — through the same identity plugin,
//! trust anchors and policies as any other.
//!
//! A file is re-read every few seconds, so rotated tokens (Kubernetes
//! projected service-account tokens rotate hourly) are picked up without a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws_token::AwsTokenMinter;

/// How long a read credential is used before the file is read again.
const REREAD_AFTER: Duration = Duration::from_secs(5);

/// The workload's own credential.
pub enum AmbientCredential {
    /// Read from a file (e.g. a projected service-account token).
    File(FileCredential),
    /// Minted from the task's AWS credentials (the ECS task role): a signed
    /// `GetCallerIdentity` for this deployment's audience, re-minted well
    /// before it or its credentials expire.
    Aws(Arc<AwsTokenMinter>),
}

impl AmbientCredential {
    /// Reads from `path` when asked.
    pub fn file(path: &Path) -> Self {
        Self::File(FileCredential {
            path: path.to_path_buf(),
            cached: Mutex::new(None),
        })
    }

    /// The current credential, or `None` when there is none (the call is
    /// then unauthenticated, and the log says why).
    pub async fn get(&self) -> Option<Arc<Vec<u8>>> {
        match self {
            Self::File(file) => file.get(),
            Self::Aws(minter) => match minter.current().await {
                Ok(token) => Some(token),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot mint the task's own AWS token");
                    None
                }
            },
        }
    }
}

/// A credential read from a file.
pub struct FileCredential {
    path: PathBuf,
    cached: Mutex<Option<(Instant, Arc<Vec<u8>>)>>,
}

impl FileCredential {
    fn get(&self) -> Option<Arc<Vec<u8>>> {
        if let Ok(cached) = self.cached.lock()
            && let Some((read_at, value)) = cached.as_ref()
            && read_at.elapsed() < REREAD_AFTER
        {
            return Some(value.clone());
        }
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let value = bytes.trim_ascii().to_vec();
                if value.is_empty() {
                    tracing::warn!(file = %self.path.display(), "the ambient credential file is empty");
                    return None;
                }
                let value = Arc::new(value);
                if let Ok(mut cached) = self.cached.lock() {
                    *cached = Some((Instant::now(), value.clone()));
                }
                Some(value)
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the ambient credential");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_trims_and_misses_cleanly() {
        let dir = std::env::temp_dir().join(format!("intentgate-ambient-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("token");
        std::fs::write(&path, "abc\n").unwrap_or_default();
        let ambient = AmbientCredential::file(&path);
        assert_eq!(
            ambient.get().await.as_deref().map(Vec::as_slice),
            Some(&b"abc"[..])
        );
        let missing = AmbientCredential::file(&dir.join("nope"));
        assert!(missing.get().await.is_none());
        std::fs::write(&path, "  \n").unwrap_or_default();
        assert!(AmbientCredential::file(&path).get().await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
