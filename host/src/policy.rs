//! The policy engine: the only module that knows about `cedar_policy`.
//!
//! It turns schema fragments and `.cedar` files into a validated, indexed
//! [`LoadedPolicies`] ([`load`]), answers authorization [`Query`]s with a
//! fail-closed [`Decision`], swaps policy sets atomically on reload
//! ([`PolicyEngine`]) and runs policy test files ([`run_policy_tests`]).
//!
//! Invariants:
//! - an invalid set never goes live: [`load`] returns every diagnostic it can
//!   find and [`PolicyEngine::reload`] keeps the last good set;
//! - any evaluation error, or any request, context or entity that does not
//!   conform to the schema, is a deny;
//! - [`LoadedPolicies::authorize`] (indexed) and
//!   [`LoadedPolicies::authorize_unindexed`] (bare Cedar) give the same
//!   decision, determining policies and errors; `host/tests/policy_differential.rs`
//!   checks it on random policy sets.

mod authorize;
mod diagnostic;
mod engine;
mod index;
mod load;
mod reads;
mod request;
mod schema;
mod tests_file;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cedar_policy::{EntityTypeName, Policy, PolicyId, PolicySet, Schema};

use crate::model::{AuthzRequest, EntityRef, GateFacts};

pub use diagnostic::PolicyDiagnostic;
pub use engine::{PolicyEngine, ReloadSummary};
pub use load::{load, load_texts, policy_files_in};
pub use tests_file::{PolicyTestCase, PolicyTestReport, run_policy_tests};

/// A Cedar schema fragment and where it came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFragmentSource {
    /// Where the fragment came from, e.g. ``plugin `oidc` `` or a file path.
    pub origin: String,
    /// The fragment in Cedar schema syntax.
    pub text: String,
}

/// Everything a policy set is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// Plugin fragments and operator schema files. The host's base fragment
    /// (namespace `Intentgate`) is always added by the engine itself.
    pub fragments: Vec<SchemaFragmentSource>,
    /// Principal entity types of the loaded identity plugins, e.g.
    /// `["Oidc::Subject"]`. They replace the `Intentgate::Principal`
    /// placeholder in every action's `appliesTo` principal list.
    pub principal_types: Vec<String>,
    /// `.cedar` files, in the order they should be reported. Use
    /// [`policy_files_in`] to expand a directory.
    pub policy_files: Vec<PathBuf>,
}

/// A policy file already in memory (tests, benchmarks, and [`load`] itself
/// after reading the files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    /// The path diagnostics name.
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

/// Where a policy was written: the file and the 1-based line and column of
/// its first character (its first annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOrigin {
    /// The policy file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// One authorization question, in host terms.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The caller.
    pub principal: &'a EntityRef,
    /// The caller's attributes (Cedar entity-attribute JSON object; `null`
    /// means none).
    pub principal_attributes: &'a serde_json::Value,
    /// The caller's parents (all ancestors: the host passes flat entities).
    pub principal_parents: &'a [EntityRef],
    /// What the connector asks: action, resource and its attributes and
    /// parents, and the connector's part of the context.
    pub request: &'a AuthzRequest,
    /// Facts the host vouches for; they become `context.gate`.
    pub gate: &'a GateFacts,
}

/// The engine's answer to a [`Query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// True only if Cedar allowed the request, no policy failed to evaluate,
    /// and the request, context and entities conformed to the schema.
    pub allowed: bool,
    /// The `@id`s of the determining policies, sorted: the satisfied permits
    /// for an allow, the satisfied forbids for a deny (empty for a default
    /// deny or a request that could not be evaluated).
    pub determining: Vec<String>,
    /// Evaluation errors and request, context or entity validation errors,
    /// sorted. Any error means deny.
    pub errors: Vec<String>,
    /// Annotations of the determining policies other than `id`, as key to
    /// the set of values the policies gave (e.g. `database_role` to
    /// `{"orders_reader"}`).
    pub annotations: BTreeMap<String, BTreeSet<String>>,
}

/// A validated, indexed policy set with its schema. Cheap to share behind an
/// `Arc`; every method takes `&self`.
pub struct LoadedPolicies {
    schema: Schema,
    /// The whole set, ids renamed to their `@id`: the bare path evaluates it.
    policies: PolicySet,
    /// Every policy by index; the index and the slices refer to these.
    by_index: Vec<Policy>,
    index: index::ScopeIndex,
    slices: index::SliceCache,
    /// What each policy's conditions read of the context, by index;
    /// computed when a slice first needs it.
    reads: Vec<OnceLock<reads::ContextReads>>,
    entity_cache: request::EntityCache,
    gate_cache: request::GateCache,
    /// Entity type names of the schema, so requests need not parse them.
    entity_types: HashMap<String, EntityTypeName>,
    /// Action entities of the schema and their ancestor groups, by action
    /// type name and id; built once at load.
    actions: HashMap<String, HashMap<String, index::ActionInfo>>,
    origins: HashMap<String, PolicyOrigin>,
    warnings: Vec<PolicyDiagnostic>,
}

impl LoadedPolicies {
    /// Number of policies in the set.
    pub fn policy_count(&self) -> usize {
        self.by_index.len()
    }

    /// Validator lints and schema warnings. They never stop a load.
    pub fn warnings(&self) -> &[PolicyDiagnostic] {
        &self.warnings
    }

    /// Where the policy with this `@id` was written.
    pub fn origin(&self, policy_id: &str) -> Option<&PolicyOrigin> {
        self.origins.get(policy_id)
    }

    /// The annotations of the policy with this `@id` (for explanations).
    pub fn annotations_of(&self, policy_id: &str) -> Option<BTreeMap<String, String>> {
        let policy = self.policies.policy(&PolicyId::new(policy_id))?;
        Some(
            policy
                .annotations()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The policy ids, sorted.
    pub fn policy_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .by_index
            .iter()
            .map(|p| AsRef::<str>::as_ref(p.id()))
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl std::fmt::Debug for LoadedPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicies")
            .field("policies", &self.by_index.len())
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}
