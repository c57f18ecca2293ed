//! The decision pipeline every listener runs, in order:
//! identify → check the trust anchor → classify → decide → bind.
//!
//! Each step that fails ends the attempt with a deny and says why in the
//! audit record; nothing here forwards anything.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::{AuditQuestion, AuditRecord};
use crate::capability::{CapabilityCache, fingerprint};
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
    /// A dependency the decision needs is unreachable (e.g. STS or a JWKS
    /// endpoint): transient, worth retrying later (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    /// The capability the call presents does not exist upstream (HTTP 404),
    /// e.g. a deleted session: the client should drop it and make a new one.
    NotFound,
}

/// The outcome of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward the call, bound as described.
    Allow {
        /// Changes to the upstream request, when the call needs a backend identity.
        binding: Option<Binding>,
        /// The backend identity the call was bound to (`bind`) or checked
        /// against (a capability), e.g. the database role.
        bound_to: Option<String>,
        /// Show the connector the response (`observe`).
        observe_response: bool,
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

/// What upstream said when asked about a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    /// The response message, for the connector's `observe`.
    Found(Vec<u8>),
    /// Upstream does not know it; the message is upstream's.
    NotFound(String),
    /// Upstream refused to tell (e.g. an intentgate gateway whose policies
    /// deny this caller); the message is upstream's.
    Refused(String),
}

/// A boxed future, so the lookup can be a trait object.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<LookupAnswer, String>> + Send + 'a>>;

/// Sends a connector's lookup call upstream with the listener's own
/// upstream credential (never the caller's).
pub trait CapabilityLookup: Send + Sync {
    /// Sends `call` upstream and returns its one response message.
    fn lookup<'a>(&'a self, call: &'a CallInput, request_id: &'a str) -> LookupFuture<'a>;
}

/// Where a listener keeps capabilities and how it asks upstream about them.
pub struct Capabilities {
    /// Learned bindings.
    pub cache: Arc<CapabilityCache>,
    /// Upstream, for capabilities this replica has not seen.
    pub upstream: Arc<dyn CapabilityLookup>,
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
    capabilities: Option<Capabilities>,
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
            capabilities: None,
        }
    }

    /// Lets the gate check capabilities (e.g. sessions) against their
    /// bound values; without this, calls presenting one are denied.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Some(capabilities);
        self
    }

    /// The connector this gate classifies with.
    pub fn connector(&self) -> &Arc<ConnectorPlugin> {
        &self.connector
    }

    /// Records what a response taught: capabilities and their bound values
    /// (an empty value means `bound_to`, the value the call was bound to).
    /// Returns how many were recorded.
    pub fn learn(&self, grants: &[(String, String)], bound_to: Option<&str>) -> usize {
        let Some(caps) = &self.capabilities else {
            return 0;
        };
        let now = clock::now_unix();
        let mut learned = 0;
        for (capability, value) in grants {
            let value = if value.is_empty() {
                match bound_to {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                value.as_str()
            };
            caps.cache.insert(capability, value, now);
            learned += 1;
        }
        learned
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
        let _verifying = self.cache.verify_once(&key).await;
        if let Some(identity) = self.cache.get(&key, now) {
            // Another call with this credential verified it while we waited.
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
            Ok(c) => {
                record.replay_safe = c.replay_safe;
                c
            }
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
        let mut bound_to = None;
        let binding = match &classification.binding_annotation {
            None => None,
            Some(key) if classification.capability.is_some() => {
                let capability = classification.capability.as_deref().unwrap_or_default();
                match self
                    .check_capability(key, capability, &bindings, attempt.request_id, record)
                    .await
                {
                    Ok(value) => bound_to = Some(value),
                    Err(verdict) => return verdict,
                }
                None
            }
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
                        bound_to = Some((*value).clone());
                        match self.connector.bind(attempt.call, value).await {
                            Ok(binding) => Some(binding),
                            // A refusal (e.g. the client asked for another role than
                            // its policy names) is a policy deny; a plugin failure is 503.
                            Err(error) => {
                                return failed(
                                    record,
                                    DenyKind::Forbidden,
                                    "binding refused",
                                    error,
                                );
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
        Verdict::Allow {
            binding,
            bound_to,
            observe_response: classification.observe_response,
        }
    }

    /// Allows a call presenting `capability` only when the value it is bound
    /// to is among `allowed` (the determining permits' annotation values).
    async fn check_capability(
        &self,
        key: &str,
        capability: &str,
        allowed: &BTreeSet<String>,
        request_id: &str,
        record: &mut AuditRecord,
    ) -> Result<String, Verdict> {
        let shown = fingerprint(capability);
        if allowed.is_empty() {
            return Err(deny(
                record,
                DenyKind::Forbidden,
                format!(
                    "no determining policy names a `@{key}`; this call needs an explicit backend identity"
                ),
            ));
        }
        let Some(caps) = &self.capabilities else {
            return Err(deny(
                record,
                DenyKind::Failed,
                format!(
                    "the call presents capability {shown}, and this listener cannot check capabilities"
                ),
            ));
        };
        let now = clock::now_unix();
        let value = match caps.cache.get(capability, now) {
            Some(value) => value,
            None => {
                self.look_up(caps, capability, &shown, request_id, record)
                    .await?
            }
        };
        if allowed.contains(&value) {
            record.binding = Some(format!("{key}={value}"));
            Ok(value)
        } else {
            let names: Vec<String> = allowed.iter().cloned().collect();
            Err(deny(
                record,
                DenyKind::Forbidden,
                format!(
                    "capability {shown} is bound to `{key}={value}`, which the determining policies do not give this principal (they name {})",
                    quote_list(&names)
                ),
            ))
        }
    }

    /// Asks upstream what a capability this replica has not seen is bound to.
    async fn look_up(
        &self,
        caps: &Capabilities,
        capability: &str,
        shown: &str,
        request_id: &str,
        record: &mut AuditRecord,
    ) -> Result<String, Verdict> {
        record.capability_lookup = true;
        let call = self
            .connector
            .lookup(capability)
            .await
            .map_err(|e| failed(record, DenyKind::Malformed, "capability lookup refused", e))?;
        let message = match caps.upstream.lookup(&call, request_id).await {
            Ok(LookupAnswer::Found(message)) => message,
            Ok(LookupAnswer::NotFound(message)) => {
                return Err(deny(
                    record,
                    DenyKind::NotFound,
                    format!("capability {shown} is unknown upstream: {message}"),
                ));
            }
            Ok(LookupAnswer::Refused(message)) => {
                return Err(deny(
                    record,
                    DenyKind::Forbidden,
                    format!(
                        "upstream refused to say what capability {shown} is bound to: {message}"
                    ),
                ));
            }
            Err(e) => {
                record.decision = "error";
                record.reason = format!("capability {shown}: upstream lookup failed: {e}");
                return Err(Verdict::Deny {
                    kind: DenyKind::Unavailable,
                    reason: record.reason.clone(),
                });
            }
        };
        let grants = self.connector.observe(&call, &message).await.map_err(|e| {
            failed(
                record,
                DenyKind::Failed,
                "capability lookup answer refused",
                e,
            )
        })?;
        self.learn(&grants, None);
        grants
            .into_iter()
            .find(|(c, v)| c == capability && !v.is_empty())
            .map(|(_, v)| v)
            .ok_or_else(|| {
                deny(
                    record,
                    DenyKind::Forbidden,
                    format!("upstream did not say what capability {shown} is bound to, so it cannot be used"),
                )
            })
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
                kind: DenyKind::Unavailable,
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
