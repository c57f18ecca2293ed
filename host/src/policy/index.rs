//! The scope index. Cedar's authorizer evaluates every policy of the set it
//! is given (about 14 ms at 10,000 policies), so at load time we index each
//! policy by its principal, action and resource scope; a request then
//! evaluates only a small slice of the policies whose scope can match it.
//!
//! Soundness: a policy is left out of a slice only if its scope is false for
//! the request. Cedar evaluates a policy as `scope && conditions`, and scope
//! tests (`==`, `in`, `is`) never error, so a left-out policy can neither be
//! satisfied nor report an error: the slice gives the same decision,
//! determining policies and errors as the whole set.
//!
//! The scope test is also exact (see [`ScopeIndex::matching`]), so a
//! matching policy with no `when`/`unless` clause is satisfied without
//! evaluating it: Cedar would evaluate `scope && true`, which is `true` and
//! cannot error. A [`Slice`] therefore hands Cedar only the matching
//! policies that have conditions, and lists the others as satisfied.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Effect, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};

use super::reads::ContextReads;

/// An action entity from the schema and the action groups it belongs to.
#[derive(Debug, Clone)]
pub(super) struct ActionInfo {
    /// A number unique among the schema's actions (for cache keys).
    pub ordinal: u32,
    pub uid: EntityUid,
    /// Transitive ancestors (action groups).
    pub ancestors: Vec<EntityUid>,
}

/// Actions of the schema by action type name and id, with their ancestors.
pub(super) fn action_table(schema: &Schema) -> HashMap<String, HashMap<String, ActionInfo>> {
    let entities = schema.action_entities();
    let all_groups: Vec<EntityUid> = schema.action_groups().cloned().collect();
    let mut table: HashMap<String, HashMap<String, ActionInfo>> = HashMap::new();
    for (ordinal, uid) in (0..).zip(schema.actions()) {
        let ancestors = match &entities {
            Ok(entities) => entities
                .ancestors(uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default(),
            // Cannot happen for a schema that built; if it did, treating
            // every group as an ancestor over-includes, which is safe.
            Err(_) => all_groups.clone(),
        };
        table
            .entry(uid.type_name().to_string())
            .or_default()
            .insert(
                uid.id().unescaped().to_owned(),
                ActionInfo {
                    ordinal,
                    uid: uid.clone(),
                    ancestors,
                },
            );
    }
    table
}

/// A principal or resource scope constraint.
#[derive(Debug, Clone)]
enum EntityScope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl From<PrincipalConstraint> for EntityScope {
    fn from(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => Self::Any,
            PrincipalConstraint::Eq(u) => Self::Eq(u),
            PrincipalConstraint::In(u) => Self::In(u),
            PrincipalConstraint::Is(t) => Self::Is(t),
            PrincipalConstraint::IsIn(t, u) => Self::IsIn(t, u),
        }
    }
}

impl From<ResourceConstraint> for EntityScope {
    fn from(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => Self::Any,
            ResourceConstraint::Eq(u) => Self::Eq(u),
            ResourceConstraint::In(u) => Self::In(u),
            ResourceConstraint::Is(t) => Self::Is(t),
            ResourceConstraint::IsIn(t, u) => Self::IsIn(t, u),
        }
    }
}

/// The request's principal or resource: the entity and its ancestors as
/// Cedar computed them (the transitive closure of the request's entities).
pub(super) struct Subject<'a> {
    pub uid: &'a EntityUid,
    pub ancestors: &'a [EntityUid],
}

impl Subject<'_> {
    /// Cedar's `subject in uid`: the entity itself or one of its ancestors
    /// in the request's entities (the entity store Cedar evaluates with).
    fn is_in(&self, uid: &EntityUid) -> bool {
        self.uid == uid || self.ancestors.contains(uid)
    }
}

impl EntityScope {
    fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(u) => s.uid == u,
            Self::In(u) => s.is_in(u),
            Self::Is(t) => s.uid.type_name() == t,
            Self::IsIn(t, u) => s.uid.type_name() == t && s.is_in(u),
        }
    }
}

/// The request's action and its ancestor groups.
pub(super) struct ActionSubject<'a> {
    pub uid: &'a EntityUid,
    pub ancestors: &'a [EntityUid],
}

#[derive(Debug, Clone)]
enum ActionScope {
    Any,
    Eq(EntityUid),
    In(Vec<EntityUid>),
}

impl ActionScope {
    fn matches(&self, a: &ActionSubject<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(u) => a.uid == u,
            Self::In(list) => list.iter().any(|u| a.uid == u || a.ancestors.contains(u)),
        }
    }
}

#[derive(Debug, Clone)]
struct PolicyScope {
    principal: EntityScope,
    action: ActionScope,
    resource: EntityScope,
}

impl PolicyScope {
    fn matches(&self, p: &Subject<'_>, a: &ActionSubject<'_>, r: &Subject<'_>) -> bool {
        self.principal.matches(p) && self.action.matches(a) && self.resource.matches(r)
    }
}

/// Posting lists for one entity dimension (principal or resource).
#[derive(Debug, Default)]
struct EntityPostings {
    eq: HashMap<EntityUid, Vec<u32>>,
    /// `in uid` and `is T in uid`, keyed by the uid.
    within: HashMap<EntityUid, Vec<u32>>,
    is: HashMap<EntityTypeName, Vec<u32>>,
    any: Vec<u32>,
}

impl EntityPostings {
    fn add(&mut self, scope: &EntityScope, policy: u32) {
        match scope {
            EntityScope::Any => self.any.push(policy),
            EntityScope::Eq(u) => self.eq.entry(u.clone()).or_default().push(policy),
            EntityScope::In(u) | EntityScope::IsIn(_, u) => {
                self.within.entry(u.clone()).or_default().push(policy)
            }
            EntityScope::Is(t) => self.is.entry(t.clone()).or_default().push(policy),
        }
    }

    /// Every list that can hold a policy matching `s` (a superset).
    fn lists<'s>(&'s self, s: &Subject<'_>, out: &mut Vec<&'s [u32]>) {
        out.push(&self.any);
        push_list(out, self.eq.get(s.uid));
        push_list(out, self.within.get(s.uid));
        for a in s.ancestors {
            push_list(out, self.within.get(a));
        }
        push_list(out, self.is.get(s.uid.type_name()));
    }
}

/// Posting lists for the action dimension.
#[derive(Debug, Default)]
struct ActionPostings {
    eq: HashMap<EntityUid, Vec<u32>>,
    /// `in [..]`, one entry per listed action or group.
    within: HashMap<EntityUid, Vec<u32>>,
    any: Vec<u32>,
}

impl ActionPostings {
    fn add(&mut self, scope: &ActionScope, policy: u32) {
        match scope {
            ActionScope::Any => self.any.push(policy),
            ActionScope::Eq(u) => self.eq.entry(u.clone()).or_default().push(policy),
            ActionScope::In(list) => {
                for u in list {
                    let postings = self.within.entry(u.clone()).or_default();
                    // `action in [a, a]` lists a policy once.
                    if postings.last() != Some(&policy) {
                        postings.push(policy);
                    }
                }
            }
        }
    }

    fn lists<'s>(&'s self, a: &ActionSubject<'_>, out: &mut Vec<&'s [u32]>) {
        out.push(&self.any);
        push_list(out, self.eq.get(a.uid));
        push_list(out, self.within.get(a.uid));
        for g in a.ancestors {
            push_list(out, self.within.get(g));
        }
    }
}

fn push_list<'s>(out: &mut Vec<&'s [u32]>, list: Option<&'s Vec<u32>>) {
    if let Some(list) = list {
        out.push(list);
    }
}

/// The index over one policy set: each policy's scope, and posting lists per
/// dimension. Policies are numbered by their position in the set's
/// `by_index` vector.
#[derive(Debug, Default)]
pub(super) struct ScopeIndex {
    scopes: Vec<PolicyScope>,
    principal: EntityPostings,
    action: ActionPostings,
    resource: EntityPostings,
}

impl ScopeIndex {
    pub fn build(policies: &[Policy]) -> Self {
        let mut index = Self::default();
        for (n, policy) in policies.iter().enumerate() {
            let Ok(n) = u32::try_from(n) else { break };
            let scope = PolicyScope {
                principal: policy.principal_constraint().into(),
                action: match policy.action_constraint() {
                    ActionConstraint::Any => ActionScope::Any,
                    ActionConstraint::Eq(u) => ActionScope::Eq(u),
                    ActionConstraint::In(list) => ActionScope::In(list),
                },
                resource: policy.resource_constraint().into(),
            };
            index.principal.add(&scope.principal, n);
            index.action.add(&scope.action, n);
            index.resource.add(&scope.resource, n);
            index.scopes.push(scope);
        }
        index
    }

    /// The policies whose scope matches the request, sorted and unique.
    /// Starts from the dimension with the fewest candidates and checks each
    /// candidate's whole scope, which costs a few comparisons.
    ///
    /// The check is exact: it is Cedar's own scope semantics (`==` on entity
    /// uids, `is` on type names, `in` as "equal to, or an ancestor in the
    /// request's entities", action groups from the schema's action
    /// entities, which is where the request's action entities come from),
    /// evaluated on the ancestors Cedar computed for this request's
    /// entities. A listed policy's scope is true in Cedar, and a policy left
    /// out has a false scope.
    pub fn matching(&self, p: &Subject<'_>, a: &ActionSubject<'_>, r: &Subject<'_>) -> Vec<u32> {
        let mut by_principal = Vec::new();
        let mut by_action = Vec::new();
        let mut by_resource = Vec::new();
        self.principal.lists(p, &mut by_principal);
        self.action.lists(a, &mut by_action);
        self.resource.lists(r, &mut by_resource);
        let size = |lists: &[&[u32]]| lists.iter().map(|l| l.len()).sum::<usize>();
        let smallest = [by_principal, by_action, by_resource]
            .into_iter()
            .min_by_key(|lists| size(lists));
        let mut out: Vec<u32> = smallest
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .copied()
            .filter(|&n| {
                self.scopes
                    .get(n as usize)
                    .is_some_and(|s| s.matches(p, a, r))
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Upper bound on cached slices; shapes beyond it evict an arbitrary entry.
const SLICE_CACHE_CAPACITY: usize = 4096;

/// The policies whose scope matches one request shape, split by what
/// deciding them takes. The default is the empty slice.
#[derive(Debug, Default)]
pub(super) struct Slice {
    /// The matching policies with `when`/`unless` clauses: Cedar evaluates
    /// these. `None` when there are none.
    pub conditioned: Option<PolicySet>,
    /// Matching permits without conditions: satisfied (their scope matched
    /// exactly and `scope && true` cannot error). Policy numbers, sorted.
    pub permits: Vec<u32>,
    /// Matching forbids without conditions, likewise.
    pub forbids: Vec<u32>,
    /// What the conditioned policies read of the context.
    pub reads: ContextReads,
}

impl Slice {
    /// The slice of `matching` (sorted policy numbers into `policies`).
    /// `reads_of(n)` says what policy `n`'s conditions read. `None` only if
    /// Cedar refuses the set, which cannot happen for unique ids.
    pub fn build(
        policies: &[Policy],
        matching: &[u32],
        reads_of: impl Fn(u32) -> ContextReads,
    ) -> Option<Self> {
        let mut conditioned = Vec::new();
        let mut slice = Self {
            conditioned: None,
            permits: Vec::new(),
            forbids: Vec::new(),
            reads: ContextReads::default(),
        };
        for &n in matching {
            let policy = policies.get(n as usize)?;
            if policy.has_non_scope_constraint() {
                slice.reads.union(&reads_of(n));
                conditioned.push(policy.clone());
            } else {
                match policy.effect() {
                    Effect::Permit => slice.permits.push(n),
                    Effect::Forbid => slice.forbids.push(n),
                }
            }
        }
        if !conditioned.is_empty() {
            slice.conditioned = Some(PolicySet::from_policies(conditioned).ok()?);
        }
        Some(slice)
    }
}

/// Slices of the policy set keyed by their sorted policy numbers, so
/// requests of the same shape (same principal, action and resource
/// ancestry) reuse one slice instead of building it per request.
#[derive(Debug, Default)]
pub(super) struct SliceCache {
    slices: RwLock<HashMap<Box<[u32]>, Arc<Slice>>>,
}

impl SliceCache {
    /// The cached slice for `key`, or the one `build` makes (cached when it
    /// succeeds).
    pub fn get_or_build(
        &self,
        key: &[u32],
        build: impl FnOnce() -> Option<Slice>,
    ) -> Option<Arc<Slice>> {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map itself is still a valid cache.
        if let Some(slice) = self
            .slices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Some(Arc::clone(slice));
        }
        let slice = Arc::new(build()?);
        let mut slices = self.slices.write().unwrap_or_else(|e| e.into_inner());
        if slices.len() >= SLICE_CACHE_CAPACITY
            && let Some(victim) = slices.keys().next().cloned()
        {
            slices.remove(&victim);
        }
        slices.insert(key.into(), Arc::clone(&slice));
        Some(slice)
    }

    /// Number of cached slices.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slices.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
