//! The request path: turns a host [`Query`] into a schema-checked Cedar
//! request and entities, evaluates it (on the index's slice or the whole
//! set) and folds Cedar's response into a fail-closed [`Decision`].
//!
//! The indexed path ([`LoadedPolicies::authorize`]) has two ways to a
//! decision, with the same answer:
//!
//! - slow: Cedar validates the whole request against the schema
//!   (`Request::new(.., Some(schema))`) and evaluates the slice's
//!   conditioned policies on it. Every first request of its kind takes it,
//!   and so does every request whose context has no literal reading;
//! - fast: the entity memo says Cedar already validated a request with the
//!   same principal, action, resource and context shape (`request.rs`,
//!   `validation_key`, argues why the outcome is the same), so Cedar gets an
//!   unvalidated request whose context holds only what the conditioned
//!   policies read (`reads.rs` argues why they evaluate the same), or no
//!   request at all if the slice has no conditioned policy.
//!
//! Either way the slice's unconditioned policies are satisfied without
//! evaluation (`index.rs`), and [`LoadedPolicies::combine`] merges them with
//! Cedar's answer exactly as Cedar's authorizer would have.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, EntityId, EntityUid, Policy, Request, Response,
};

use super::index::{ActionInfo, ActionSubject, Slice, Subject};
use super::reads::{ALL_GATE_FIELDS, ContextReads};
use super::request::{
    EntityInput, Found, Plan, RequestEntities, context_key, literal_context, projected_context,
    schema_context, validation_key,
};
use super::{Decision, LoadedPolicies, Query};
use crate::model::EntityRef;

/// A query in Cedar terms, checked against the schema.
struct Prepared {
    request: Request,
    entities: Arc<RequestEntities>,
}

impl LoadedPolicies {
    /// Decides a query, evaluating only the policies whose scope can match
    /// it (the fast path). Same answer as [`Self::authorize_unindexed`].
    pub fn authorize(&self, q: &Query<'_>) -> Decision {
        let action = match self.action(q) {
            Ok(action) => action,
            Err(error) => return Decision::invalid(error),
        };
        let key = validation_key(action.ordinal, q.gate.tls, &q.request.context);
        let found = match self.entities(q, key.as_deref(), action.ordinal) {
            Ok(found) => found,
            Err(error) => return Decision::invalid(error),
        };
        let entities = &found.entities;
        let plan = match found.plan {
            Some(plan) => plan,
            None => match self.slice(action, entities) {
                Some(slice) => self.entity_cache.store_plan(
                    entities,
                    q.principal,
                    &q.request.resource,
                    action.ordinal,
                    Plan::new(slice),
                ),
                // Cannot happen (ids are unique); the whole set is always
                // right.
                None => return self.authorize_unindexed(q),
            },
        };

        if found.validated
            && let Some(decision) = self.decide_validated(q, action, entities, &plan)
        {
            return decision;
        }

        // Cedar validates the whole request.
        let (request, literal) = match self.request(q, action, entities) {
            Ok(built) => built,
            Err(error) => return Decision::invalid(error),
        };
        if literal && let Some(key) = key {
            self.entity_cache
                .mark_validated(entities, q.principal, &q.request.resource, key);
        }
        let response = plan.slice.conditioned.as_ref().map(|conditioned| {
            Authorizer::new().is_authorized(&request, conditioned, &entities.entities)
        });
        self.combine(&plan.slice, response.as_ref())
    }

    /// The index's slice for a request's action and entities.
    fn slice(&self, action: &ActionInfo, entities: &RequestEntities) -> Option<Arc<Slice>> {
        let matching = self.index.matching(
            &Subject {
                uid: &entities.principal,
                ancestors: &entities.principal_ancestors,
            },
            &ActionSubject {
                uid: &action.uid,
                ancestors: &action.ancestors,
            },
            &Subject {
                uid: &entities.resource,
                ancestors: &entities.resource_ancestors,
            },
        );
        if matching.is_empty() {
            // No scope matches: Cedar would deny by default with no
            // determining policy and no error (scopes cannot error), once
            // the request is known to be valid.
            return Some(Arc::new(Slice::default()));
        }
        self.slices.get_or_build(&matching, || {
            Slice::build(&self.by_index, &matching, |n| self.reads_of(n))
        })
    }

    /// What policy `n`'s conditions read of the context (memoized).
    fn reads_of(&self, n: u32) -> ContextReads {
        match (self.reads.get(n as usize), self.by_index.get(n as usize)) {
            (Some(memo), Some(policy)) => memo.get_or_init(|| ContextReads::of(policy)).clone(),
            _ => ContextReads::WHOLE,
        }
    }

    /// Decides a query with Cedar's bare authorizer over the whole set.
    /// For differential tests and benchmarks; too slow for large sets.
    pub fn authorize_unindexed(&self, q: &Query<'_>) -> Decision {
        match self.prepare(q) {
            Ok(prepared) => {
                let response = Authorizer::new().is_authorized(
                    &prepared.request,
                    &self.policies,
                    &prepared.entities.entities,
                );
                self.fold(&response)
            }
            Err(error) => Decision::invalid(error),
        }
    }

    /// The fast path for a request whose validity is already known: Cedar
    /// evaluates the conditioned policies on an unvalidated request whose
    /// context holds what they read. `None` if anything unexpected happens
    /// (the caller then takes the slow path, which reports it).
    fn decide_validated(
        &self,
        q: &Query<'_>,
        action: &ActionInfo,
        entities: &RequestEntities,
        plan: &Plan,
    ) -> Option<Decision> {
        let slice = &plan.slice;
        let Some(conditioned) = &slice.conditioned else {
            return Some(self.combine(slice, None));
        };
        // Equal context keys build equal contexts; the principal, action
        // and resource are fixed by the plan.
        let context_key = context_key(&slice.reads, q.gate, &q.request.context);
        let remembered = context_key.as_deref().and_then(|key| plan.request(key));
        let request = match remembered {
            Some(request) => request,
            None => {
                let gate_fields = if slice.reads.whole {
                    ALL_GATE_FIELDS
                } else {
                    slice.reads.gate
                };
                let gate = self.gate_cache.gate(q.gate, gate_fields).ok()?;
                let context = projected_context(&q.request.context, &slice.reads, gate)?;
                // Validated: a request with the same validation key was
                // accepted by `Request::new(.., Some(schema))`.
                let request = Request::new(
                    entities.principal.clone(),
                    action.uid.clone(),
                    entities.resource.clone(),
                    context,
                    None,
                )
                .ok()?;
                if let Some(key) = context_key {
                    plan.remember(key, request.clone());
                }
                request
            }
        };
        let response = Authorizer::new().is_authorized(&request, conditioned, &entities.entities);
        Some(self.combine(slice, Some(&response)))
    }

    /// The decision Cedar's authorizer would give on all of the slice's
    /// policies, from its `response` on the conditioned ones (`None` when
    /// there are none) and the satisfied unconditioned ones.
    ///
    /// Cedar (`Authorizer::is_authorized`) evaluates each policy on its own;
    /// a policy that errors counts as not satisfied and adds its error. It
    /// allows iff some permit is satisfied and no forbid is, and its reason
    /// is the satisfied forbids if there are any, else the satisfied
    /// permits. So from the response on a subset: a deny with reasons names
    /// exactly that subset's satisfied forbids; an allow names exactly its
    /// satisfied permits and means it has no satisfied forbid; a deny
    /// without reasons means neither. Adding the unconditioned policies
    /// (satisfied, no errors) to those sets gives the whole answer.
    fn combine(&self, slice: &Slice, response: Option<&Response>) -> Decision {
        let mut errors = Vec::new();
        let mut satisfied_permits: Vec<(String, Option<&Policy>)> = Vec::new();
        let mut satisfied_forbids: Vec<(String, Option<&Policy>)> = Vec::new();
        if let Some(response) = response {
            errors.extend(response.diagnostics().errors().map(ToString::to_string));
            errors.sort_unstable();
            let reasons = response.diagnostics().reason().map(|id| {
                let policy = slice
                    .conditioned
                    .as_ref()
                    .and_then(|conditioned| conditioned.policy(id));
                (id.to_string(), policy)
            });
            match response.decision() {
                CedarDecision::Allow => satisfied_permits.extend(reasons),
                CedarDecision::Deny => satisfied_forbids.extend(reasons),
            }
        }
        let known = |numbers: &[u32]| -> Vec<(String, Option<&Policy>)> {
            numbers
                .iter()
                .filter_map(|&n| self.by_index.get(n as usize))
                .map(|p| (p.id().to_string(), Some(p)))
                .collect()
        };
        let (allowed, mut determining) = if satisfied_forbids.is_empty() && slice.forbids.is_empty()
        {
            satisfied_permits.extend(known(&slice.permits));
            (
                !satisfied_permits.is_empty() && errors.is_empty(),
                satisfied_permits,
            )
        } else {
            satisfied_forbids.extend(known(&slice.forbids));
            (false, satisfied_forbids)
        };
        determining.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut annotations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for policy in determining.iter().filter_map(|(_, p)| *p) {
            add_annotations(&mut annotations, policy);
        }
        Decision {
            allowed,
            determining: determining.into_iter().map(|(id, _)| id).collect(),
            errors,
            annotations,
        }
    }

    /// Cedar skips a policy that errors, forbids included; we deny instead.
    fn fold(&self, response: &Response) -> Decision {
        let mut errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        errors.sort_unstable();
        let mut determining: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        determining.sort_unstable();
        let mut annotations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in response.diagnostics().reason() {
            if let Some(policy) = self.policies.policy(id) {
                add_annotations(&mut annotations, policy);
            }
        }
        Decision {
            allowed: response.decision() == CedarDecision::Allow && errors.is_empty(),
            determining,
            errors,
            annotations,
        }
    }

    /// Builds the Cedar request and entities, all checked against the
    /// schema. Any failure is a reason to deny.
    fn prepare(&self, q: &Query<'_>) -> Result<Prepared, String> {
        let action = self.action(q)?;
        let entities = self.entities(q, None, action.ordinal)?.entities;
        let (request, _) = self.request(q, action, &entities)?;
        Ok(Prepared { request, entities })
    }

    fn action(&self, q: &Query<'_>) -> Result<&ActionInfo, String> {
        let action_ref = &q.request.action;
        self.actions
            .get(&action_ref.type_name)
            .and_then(|ids| ids.get(&action_ref.id))
            .ok_or_else(|| format!("action `{action_ref}` is not declared in the schema"))
    }

    /// The request's entities, whether a request with `key` and these
    /// entities has already passed Cedar's validation, and the plan for
    /// the action (all memoized).
    fn entities(&self, q: &Query<'_>, key: Option<&[u8]>, action: u32) -> Result<Found, String> {
        self.entity_cache.get(
            &self.schema,
            |r, role| self.uid(r, role),
            &EntityInput {
                entity: q.principal,
                attributes: q.principal_attributes,
                parents: q.principal_parents,
            },
            &EntityInput {
                entity: &q.request.resource,
                attributes: &q.request.resource_attributes,
                parents: &q.request.resource_parents,
            },
            key,
            action,
        )
    }

    /// The whole request, validated by Cedar against the schema, and whether
    /// its context is the literal reading.
    fn request(
        &self,
        q: &Query<'_>,
        action: &ActionInfo,
        entities: &RequestEntities,
    ) -> Result<(Request, bool), String> {
        // The literal reading first (fast); Cedar's schema-directed reading
        // when the schema rejects it. `Request::new` validates both.
        let connector = &q.request.context;
        let literal = literal_context(connector, self.gate_cache.gate(q.gate, ALL_GATE_FIELDS)?);
        let new_request = |context| {
            Request::new(
                entities.principal.clone(),
                action.uid.clone(),
                entities.resource.clone(),
                context,
                Some(&self.schema),
            )
            .map_err(|e| format!("invalid request: {e}"))
        };
        match literal.map(new_request) {
            Some(Ok(request)) => Ok((request, true)),
            _ => {
                let context = schema_context(connector, q.gate, &self.schema, &action.uid)?;
                Ok((new_request(context)?, false))
            }
        }
    }

    fn uid(&self, r: &EntityRef, role: &str) -> Result<EntityUid, String> {
        let ty = self.entity_types.get(&r.type_name).ok_or_else(|| {
            format!(
                "{role} type `{}` is not declared in the schema",
                r.type_name
            )
        })?;
        Ok(EntityUid::from_type_name_and_id(
            ty.clone(),
            EntityId::new(&r.id),
        ))
    }
}

fn add_annotations(annotations: &mut BTreeMap<String, BTreeSet<String>>, policy: &Policy) {
    for (key, value) in policy.annotations() {
        if key != "id" {
            annotations
                .entry(key.to_owned())
                .or_default()
                .insert(value.to_owned());
        }
    }
}

impl Decision {
    /// A deny for a request that could not be evaluated.
    fn invalid(error: String) -> Self {
        Self {
            errors: vec![error],
            ..Self::default()
        }
    }
}
