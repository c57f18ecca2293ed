//! Hot reload: the live policy set sits behind an `ArcSwap`, so the request
//! path takes a lock-free snapshot and a reload swaps in a new set only once
//! it has loaded and validated completely.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{LoadedPolicies, PolicyDiagnostic, PolicySources, load};

/// The live policy set.
pub struct PolicyEngine {
    current: ArcSwap<LoadedPolicies>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Policies in the new set.
    pub policies: usize,
    /// Policies in the set it replaced.
    pub previous_policies: usize,
    /// Warnings of the new set.
    pub warnings: Vec<PolicyDiagnostic>,
}

impl PolicyEngine {
    /// Starts with a set that has already loaded.
    pub fn new(initial: LoadedPolicies) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// A snapshot for one request (or one call's several requests): it
    /// stays valid, and unchanged, however many reloads happen meanwhile.
    pub fn current(&self) -> Arc<LoadedPolicies> {
        self.current.load_full()
    }

    /// Loads, validates and indexes the sources, then swaps the new set in.
    /// If anything is wrong the live set stays as it was and every problem
    /// is returned. This reads files and takes up to a few hundred
    /// milliseconds for large sets: call it from a blocking task, not from
    /// the request path.
    pub fn reload(&self, sources: &PolicySources) -> Result<ReloadSummary, Vec<PolicyDiagnostic>> {
        // Logging is the caller's: it knows why it reloaded (signal, file
        // change) and where the diagnostics should go.
        let loaded = load(sources)?;
        let summary = ReloadSummary {
            policies: loaded.policy_count(),
            previous_policies: 0,
            warnings: loaded.warnings().to_vec(),
        };
        let previous = self.current.swap(Arc::new(loaded));
        Ok(ReloadSummary {
            previous_policies: previous.policy_count(),
            ..summary
        })
    }
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("current", &self.current.load())
            .finish()
    }
}
