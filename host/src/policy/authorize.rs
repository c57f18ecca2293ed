//! The request path: turns a host [`Query`] into a schema-checked Cedar
//! request and entities, evaluates it (on the index's slice or the whole
//! set) and folds Cedar's response into a fail-closed [`Decision`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, EntityId, EntityUid, PolicySet, Request, Response,
};

use super::index::{ActionInfo, ActionSubject, Subject};
use super::request::{EntityInput, RequestEntities, literal_context, schema_context};
use super::{Decision, LoadedPolicies, Query};
use crate::model::EntityRef;

/// A query in Cedar terms, checked against the schema.
struct Prepared<'l> {
    request: Request,
    entities: Arc<RequestEntities>,
    principal: EntityUid,
    resource: EntityUid,
    action: &'l ActionInfo,
}

impl LoadedPolicies {
    /// Decides a query, evaluating only the policies whose scope can match
    /// it (the fast path). Same answer as [`Self::authorize_unindexed`].
    pub fn authorize(&self, q: &Query<'_>) -> Decision {
        let prepared = match self.prepare(q) {
            Ok(p) => p,
            Err(error) => return Decision::invalid(error),
        };
        let principal_ancestors: Vec<&EntityUid> =
            prepared.entities.principal_ancestors.iter().collect();
        let resource_ancestors: Vec<&EntityUid> =
            prepared.entities.resource_ancestors.iter().collect();
        let matching = self.index.matching(
            &Subject {
                uid: &prepared.principal,
                ancestors: &principal_ancestors,
            },
            &ActionSubject {
                uid: &prepared.action.uid,
                ancestors: &prepared.action.ancestors,
            },
            &Subject {
                uid: &prepared.resource,
                ancestors: &resource_ancestors,
            },
        );
        if matching.is_empty() {
            // No scope matches: Cedar would deny by default with no
            // determining policy and no error (scopes cannot error).
            return Decision::default();
        }
        let slice = self.slices.get_or_build(&matching, || {
            PolicySet::from_policies(
                matching
                    .iter()
                    .filter_map(|&n| self.by_index.get(n as usize).cloned()),
            )
            .ok()
        });
        match slice {
            Some(slice) => self.decide(&prepared, &slice),
            // Cannot happen (ids are unique); the whole set is always right.
            None => self.decide(&prepared, &self.policies),
        }
    }

    /// Decides a query with Cedar's bare authorizer over the whole set.
    /// For differential tests and benchmarks; too slow for large sets.
    pub fn authorize_unindexed(&self, q: &Query<'_>) -> Decision {
        match self.prepare(q) {
            Ok(prepared) => self.decide(&prepared, &self.policies),
            Err(error) => Decision::invalid(error),
        }
    }

    fn decide(&self, prepared: &Prepared<'_>, policies: &PolicySet) -> Decision {
        let response = Authorizer::new().is_authorized(
            &prepared.request,
            policies,
            &prepared.entities.entities,
        );
        self.fold(&response)
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
            let Some(policy) = self.policies.policy(id) else {
                continue;
            };
            for (key, value) in policy.annotations() {
                if key != "id" {
                    annotations
                        .entry(key.to_owned())
                        .or_default()
                        .insert(value.to_owned());
                }
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
    fn prepare(&self, q: &Query<'_>) -> Result<Prepared<'_>, String> {
        let action_ref = &q.request.action;
        let action = self
            .actions
            .get(&action_ref.type_name)
            .and_then(|ids| ids.get(&action_ref.id))
            .ok_or_else(|| format!("action `{action_ref}` is not declared in the schema"))?;
        let principal = self.uid(q.principal, "principal")?;
        let resource = self.uid(&q.request.resource, "resource")?;

        let entities = self.entity_cache.get(
            &self.schema,
            &EntityInput {
                entity: q.principal,
                uid: &principal,
                attributes: q.principal_attributes,
                parents: q.principal_parents,
            },
            &EntityInput {
                entity: &q.request.resource,
                uid: &resource,
                attributes: &q.request.resource_attributes,
                parents: &q.request.resource_parents,
            },
        )?;

        // The literal reading first (fast); Cedar's schema-directed reading
        // when the schema rejects it. `Request::new` validates both.
        let connector = &q.request.context;
        let literal = literal_context(connector, self.gate_cache.gate(q.gate)?);
        let new_request = |context| {
            Request::new(
                principal.clone(),
                action.uid.clone(),
                resource.clone(),
                context,
                Some(&self.schema),
            )
            .map_err(|e| format!("invalid request: {e}"))
        };
        let request = match literal.map(new_request) {
            Some(Ok(request)) => request,
            _ => new_request(schema_context(
                connector,
                q.gate,
                &self.schema,
                &action.uid,
            )?)?,
        };
        Ok(Prepared {
            request,
            entities,
            principal,
            resource,
            action,
        })
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

impl Decision {
    /// A deny for a request that could not be evaluated.
    fn invalid(error: String) -> Self {
        Self {
            errors: vec![error],
            ..Self::default()
        }
    }
}
