//! The decision pipeline every listener runs, in order:
//! identify → check the trust anchor → classify → decide → bind.
//!
//! Each step that fails ends the attempt with a deny and says why in the
//! audit record; nothing here forwards anything.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::{AuditQuestion, AuditRecord};
use crate::clock;
use crate::identity_cache::{IdentityCache, digest};
use crate::model::{GateFacts, Identity};
use crate::plugin::{Binding, CallError, CallInput, ConnectorPlugin, IdentityPlugin};
use crate::policy::{PolicyEngine, Query};
use crate::trust::TrustAnchors;

/// How a denied attempt is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    /// No credential, or the identity provider refused it (HTTP 401).
    Unauthenticated,
    /// The policies deny it, or no backend identity is named (HTTP 403).
    Forbidden,
    /// The connector found the call malformed (HTTP 400).
    Malformed,
    /// A plugin failed: trap, timeout, limit, unreachable dependency (HTTP 503).
    Failed,
}

/// The outcome of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward the call, bound as described.
    Allow {
        /// Changes to the upstream request, when the call needs a backend identity.
        binding: Option<Binding>,
    },
    /// Do not forward.
    Deny {
        /// How to answer.
        kind: DenyKind,
        /// Why, in words (also in the audit record).
        reason: String,
    },
}

/// One attempt as a listener saw it.
pub struct Attempt<'a> {
    /// The request ID.
    pub request_id: &'a str,
    /// The peer.
    pub peer: SocketAddr,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// The credential, when the caller sent one.
    pub credential: Option<&'a [u8]>,
    /// The call, credential removed.
    pub call: &'a CallInput,
}

/// The pipeline for one listener.
pub struct Gate {
    listener: String,
    identity: Arc<IdentityPlugin>,
    connector: Arc<ConnectorPlugin>,
    policies: Arc<PolicyEngine>,
    trust: Arc<ArcSwap<TrustAnchors>>,
    cache: Arc<IdentityCache>,
    scheme: String,
}

impl Gate {
    /// Builds the pipeline from its parts.
    pub fn new(
        listener: &str,
        scheme: &str,
        identity: Arc<IdentityPlugin>,
        connector: Arc<ConnectorPlugin>,
        policies: Arc<PolicyEngine>,
        trust: Arc<ArcSwap<TrustAnchors>>,
        cache: Arc<IdentityCache>,
    ) -> Self {
        Self {
            listener: listener.into(),
            identity,
            connector,
            policies,
            trust,
            cache,
            scheme: scheme.to_ascii_lowercase(),
        }
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// Runs the whole pipeline, filling in `record` as it goes.
    pub async fn decide(&self, attempt: &Attempt<'_>, record: &mut AuditRecord) -> Verdict {
        record.identity_provider = self.identity.info().name.clone();
        let now = clock::now_unix();
        let Some(credential) = attempt.credential else {
            return deny(
                record,
                DenyKind::Unauthenticated,
                "no credential: the request carries none where the listener expects it".into(),
            );
        };
        let identity = match self.identify(credential, now).await {
            Ok((identity, cached)) => {
                record.identity_cached = Some(cached);
                identity
            }
            Err(error) => {
                return failed(
                    record,
                    DenyKind::Unauthenticated,
                    "authentication failed",
                    error,
                );
            }
        };
        self.decide_for(&identity, attempt, now, record).await
    }

    /// Verifies a credential, or finds it in the cache.
    ///
    /// # Errors
    /// The identity provider's refusal or failure.
    pub async fn identify(
        &self,
        credential: &[u8],
        now: u64,
    ) -> Result<(Identity, bool), CallError> {
        let key = digest(&self.identity.info().name, credential);
        if let Some(identity) = self.cache.get(&key, now) {
            return Ok((identity, true));
        }
        let identity = self.identity.authenticate(&self.scheme, credential).await?;
        if identity.expires_at <= now {
            return Err(CallError::Refused {
                kind: "expired",
                message: "the identity provider returned an identity that has already expired"
                    .into(),
            });
        }
        self.cache.insert(key, identity.clone(), now);
        Ok((identity, false))
    }

    /// Everything after identification: trust anchor, classification,
    /// policy decision and binding.
    pub async fn decide_for(
        &self,
        identity: &Identity,
        attempt: &Attempt<'_>,
        now: u64,
        record: &mut AuditRecord,
    ) -> Verdict {
        record.principal = Some(identity.principal.to_string());
        record.trust_anchor = Some(identity.trust_anchor.clone());
        let age_days =
            match self
                .trust
                .load()
                .check(&identity.provider, &identity.trust_anchor, now)
            {
                Ok(age) => age,
                Err(e) => return deny(record, DenyKind::Unauthenticated, e.to_string()),
            };
        let classification = match self.connector.classify(attempt.call).await {
            Ok(c) => c,
            Err(error) => {
                return failed(
                    record,
                    DenyKind::Malformed,
                    "the connector could not classify the call",
                    error,
                );
            }
        };
        let facts = GateFacts {
            request_id: attempt.request_id.to_string(),
            listener: self.listener.clone(),
            peer_ip: attempt.peer.ip(),
            identity_provider: identity.provider.clone(),
            trust_anchor: identity.trust_anchor.clone(),
            trust_anchor_age_days: age_days,
            now_unix: now,
            tls: attempt.tls,
        };
        let policies = self.policies.current();
        let mut bindings = BTreeSet::new();
        let mut all_policies = BTreeSet::new();
        let many = classification.requests.len() > 1;
        for (i, request) in classification.requests.iter().enumerate() {
            let query = Query {
                principal: &identity.principal,
                principal_attributes: &identity.attributes,
                principal_parents: &identity.parents,
                request,
                gate: &facts,
            };
            let decision = policies.authorize(&query);
            if i == 0 {
                record.action = Some(request.action.to_string());
                record.resource = Some(request.resource.to_string());
            }
            if many {
                record.requests.push(AuditQuestion {
                    action: request.action.to_string(),
                    resource: request.resource.to_string(),
                    decision: if decision.allowed { "allow" } else { "deny" },
                    policies: decision.determining.clone(),
                });
            }
            all_policies.extend(decision.determining.iter().cloned());
            if !decision.allowed {
                record.policies = decision.determining.clone();
                record.errors = decision.errors.clone();
                let reason = if !decision.errors.is_empty() {
                    format!(
                        "policy evaluation failed, so the request is denied: {}",
                        decision.errors.join("; ")
                    )
                } else if !decision.determining.is_empty() {
                    format!("denied by policy {}", quote_list(&decision.determining))
                } else {
                    format!(
                        "no policy permits {} to {} on {}",
                        identity.principal, request.action, request.resource
                    )
                };
                return deny(record, DenyKind::Forbidden, reason);
            }
            if let Some(key) = &classification.binding_annotation {
                bindings.extend(decision.annotations.get(key).into_iter().flatten().cloned());
            }
        }
        record.policies = all_policies.into_iter().collect();
        let binding = match &classification.binding_annotation {
            None => None,
            Some(key) => {
                let values: Vec<&String> = bindings.iter().collect();
                match values.as_slice() {
                    [] => {
                        return deny(
                            record,
                            DenyKind::Forbidden,
                            format!(
                                "no determining policy names a `@{key}`; this call needs an explicit backend identity"
                            ),
                        );
                    }
                    [value] => {
                        record.binding = Some(format!("{key}={value}"));
                        match self.connector.bind(attempt.call, value).await {
                            Ok(binding) => Some(binding),
                            Err(error) => {
                                return failed(record, DenyKind::Failed, "binding failed", error);
                            }
                        }
                    }
                    _ => {
                        let list: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                        return deny(
                            record,
                            DenyKind::Forbidden,
                            format!(
                                "the determining policies name conflicting `@{key}` values: {}",
                                quote_list(&list)
                            ),
                        );
                    }
                }
            }
        };
        record.decision = "allow";
        record.reason = match &record.binding {
            Some(b) => format!("allowed by policy {} as {b}", quote_list(&record.policies)),
            None => format!("allowed by policy {}", quote_list(&record.policies)),
        };
        Verdict::Allow { binding }
    }
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn deny(record: &mut AuditRecord, kind: DenyKind, reason: String) -> Verdict {
    record.decision = "deny";
    record.reason = reason.clone();
    Verdict::Deny { kind, reason }
}

/// A plugin refusal is a deny of the given kind; a plugin failure (trap,
/// timeout, limit) is an `error` decision that also denies.
fn failed(
    record: &mut AuditRecord,
    refused_kind: DenyKind,
    what: &str,
    error: CallError,
) -> Verdict {
    let reason = format!("{what}: {error}");
    match error {
        CallError::Refused {
            kind: "unavailable",
            ..
        } => {
            record.decision = "error";
            record.reason = reason.clone();
            Verdict::Deny {
                kind: DenyKind::Failed,
                reason,
            }
        }
        CallError::Refused {
            kind: "unsupported",
            ..
        } if refused_kind == DenyKind::Malformed => deny(record, DenyKind::Forbidden, reason),
        CallError::Refused { .. } => deny(record, refused_kind, reason),
        _ => {
            record.decision = "error";
            record.errors.push(error.to_string());
            record.reason = reason.clone();
            Verdict::Deny {
                kind: DenyKind::Failed,
                reason,
            }
        }
    }
}
