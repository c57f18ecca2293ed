//! Builds the Cedar context and entities of a request cheaply. Cedar's
//! schema-directed JSON parsing costs about 3 µs per value (it tries serde
//! variants one by one), and `RestrictedExpression::new_ip` and
//! `new_datetime` parse the function name on every call (about 2.5 µs each).
//! Measured in release on the bench machine: the gate record alone cost
//! 30 µs through `Context::from_json_value` with the schema, and the whole
//! request 68 µs, against 10 µs now. So:
//!
//! - the gate record is built from typed values, with the `ip(..)` and
//!   `datetime(..)` expressions memoized;
//! - the connector's context is converted literally (JSON string to Cedar
//!   string, and so on); if the schema then rejects it, because the
//!   connector relied on the schema to read a string as an `ipaddr` or an
//!   object as an entity, the caller falls back to Cedar's schema-directed
//!   parser. Either way `Request::new` validates the final context against
//!   the schema, and a literal reading that validates is exactly what the
//!   schema-directed reading gives;
//! - the entities of a (principal, resource) pair are memoized, keyed by
//!   everything they are built from, because a workload asks about the same
//!   few resources over and over;
//! - once Cedar has validated a request whose context it read literally, the
//!   memo remembers its [`validation_key`], and later requests with the same
//!   key skip Cedar's validation (see that function for why the outcome
//!   would be the same) and get only the part of the context their policies
//!   read ([`projected_context`], argued in `reads.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use cedar_policy::{Context, Entities, EntityUid, Request, RestrictedExpression, Schema};
use serde_json::{Map, Value, json};

use super::index::Slice;
use super::reads::ContextReads;
use crate::model::{EntityRef, GateFacts};

/// Upper bound on memoized `ip(..)` expressions (one per peer address).
const IP_CACHE_CAPACITY: usize = 1024;
/// Upper bound on memoized entity sets; the memo is cleared when full.
const ENTITY_CACHE_CAPACITY: usize = 2048;
/// Upper bound on validated request keys remembered per entity set; the list
/// is cleared when full.
const VALIDATED_PER_ENTITY_SET: usize = 16;
/// Upper bound on a validation key's length: requests with larger contexts
/// are validated by Cedar every time.
const MAX_VALIDATION_KEY: usize = 512;
/// Upper bound on plans (one per action) remembered per entity set; the
/// list is cleared when full.
const PLANS_PER_ENTITY_SET: usize = 8;
/// Upper bound on a context key's length: contexts with more to read are
/// built on every request.
const MAX_CONTEXT_KEY: usize = 256;

/// Memoized extension values for the gate record.
#[derive(Default)]
pub(super) struct GateCache {
    inner: Mutex<GateCacheInner>,
}

#[derive(Default)]
struct GateCacheInner {
    ips: HashMap<IpAddr, RestrictedExpression>,
    /// The last `now` seen (requests arrive in time order, so one slot
    /// serves a whole second of traffic).
    now: Option<(u64, RestrictedExpression)>,
}

impl GateCache {
    /// `context.gate` as a Cedar record, typed as `Intentgate::Gate`, with
    /// the fields whose bits are set in `fields` (bit `i` is
    /// `reads::GATE_FIELDS[i]`; `ALL_GATE_FIELDS` for the whole record).
    pub fn gate(&self, g: &GateFacts, fields: u8) -> Result<RestrictedExpression, String> {
        let wants = |bit: u8| fields & (1 << bit) != 0;
        let (ip, now) = if wants(2) || wants(6) {
            // A poisoned memo is still a valid memo.
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let ip = match inner.ips.get(&g.peer_ip) {
                Some(ip) => ip.clone(),
                None => {
                    let ip = RestrictedExpression::new_ip(g.peer_ip.to_string());
                    if inner.ips.len() >= IP_CACHE_CAPACITY {
                        inner.ips.clear();
                    }
                    inner.ips.insert(g.peer_ip, ip.clone());
                    ip
                }
            };
            let now = match &inner.now {
                Some((at, now)) if *at == g.now_unix => now.clone(),
                _ => {
                    let now = RestrictedExpression::new_datetime(rfc3339(g.now_unix));
                    inner.now = Some((g.now_unix, now.clone()));
                    now
                }
            };
            (Some(ip), Some(now))
        } else {
            (None, None)
        };
        let string = |s: &str| Some(RestrictedExpression::new_string(s.to_owned()));
        // Same order as `GATE_FIELDS`.
        let values = [
            (
                "request_id",
                wants(0).then(|| string(&g.request_id)).flatten(),
            ),
            ("listener", wants(1).then(|| string(&g.listener)).flatten()),
            ("peer_ip", if wants(2) { ip } else { None }),
            (
                "identity_provider",
                wants(3).then(|| string(&g.identity_provider)).flatten(),
            ),
            (
                "trust_anchor",
                wants(4).then(|| string(&g.trust_anchor)).flatten(),
            ),
            (
                "trust_anchor_age_days",
                wants(5).then(|| RestrictedExpression::new_long(g.trust_anchor_age_days)),
            ),
            ("now", if wants(6) { now } else { None }),
            (
                "tls",
                wants(7).then(|| RestrictedExpression::new_bool(g.tls)),
            ),
        ];
        RestrictedExpression::new_record(
            values
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?))),
        )
        .map_err(|e| format!("cannot build context.gate: {e}"))
    }
}

/// The context read literally: the connector's keys (except `gate`, which
/// is the host's) plus the gate. `None` when a value has no literal reading
/// (null, a float, an `__entity`/`__extn` escape) or Cedar rejects it.
pub(super) fn literal_context(
    connector: &Map<String, Value>,
    gate: RestrictedExpression,
) -> Option<Context> {
    projected_context(connector, &ContextReads::WHOLE, gate)
}

/// [`literal_context`] restricted to the connector keys `reads` names (all
/// of them if it reads the whole context); `gate` should hold the gate
/// fields it names. Policies that read only these see the same values as in
/// the whole context (see `reads.rs`).
pub(super) fn projected_context(
    connector: &Map<String, Value>,
    reads: &ContextReads,
    gate: RestrictedExpression,
) -> Option<Context> {
    let mut pairs = Vec::with_capacity(if reads.whole {
        connector.len() + 1
    } else {
        reads.keys.len() + 1
    });
    if reads.whole {
        for (key, value) in connector {
            if key != "gate" {
                pairs.push((key.clone(), literal(value)?));
            }
        }
    } else {
        // `reads.keys` never holds `gate`.
        for key in &reads.keys {
            if let Some(value) = connector.get(key) {
                pairs.push((key.clone(), literal(value)?));
            }
        }
    }
    pairs.push(("gate".to_owned(), gate));
    Context::from_pairs(pairs).ok()
}

/// What Cedar's request validation depends on, for a request whose context
/// has a literal reading (`None` otherwise, or when the key would be longer
/// than `MAX_VALIDATION_KEY`): the action, the shape of the connector's
/// context and `gate.tls`. The principal and resource are fixed by the
/// entity memo the key is stored in.
///
/// Why that is enough. `Request::new(.., Some(schema))` checks (1) the
/// principal's and resource's types (declared, enum members, allowed by the
/// action's `appliesTo`) and the action (declared, not external): a
/// function of the three uids; (2) that no entity uid in the context has an
/// undeclared type or is an invalid enum member: a literal reading and the
/// gate contain no entity uids; (3) that the context typechecks against the
/// action's context type. Cedar's typecheck of a value (`Type::
/// typecheck_restricted_expr`) looks only at its structure: a `Long`,
/// `String` or extension value conforms by its kind alone (an extension
/// value is checked as a call of its constructor on a string literal), a
/// `Bool` by its kind or, for a singleton type, its value, a set by each
/// element, a record by its attribute names and each attribute's value. The
/// key records exactly that structure of the connector's part (bool values
/// included, other scalars by kind, record attribute names, set elements
/// with consecutive repeats merged, which "every element conforms" does not
/// see). The gate's fields have fixed kinds, and `tls` is in the key. So two
/// requests with equal keys, principal and resource get the same validation
/// outcome, and the memo records only successes.
pub(super) fn validation_key(
    action_ordinal: u32,
    tls: bool,
    connector: &Map<String, Value>,
) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(&action_ordinal.to_le_bytes());
    key.push(u8::from(tls));
    let fields = connector.len() - usize::from(connector.contains_key("gate"));
    record_shape(
        fields,
        connector.iter().filter(|(k, _)| *k != "gate"),
        &mut key,
    )?;
    Some(key)
}

/// Everything [`projected_context`] (with the gate fields of `reads`)
/// builds the context from, as bytes: equal keys give equal contexts.
/// `None` when the context is not worth remembering: it holds the request
/// id (new on every request; so does the whole context), or more than
/// `MAX_CONTEXT_KEY` bytes.
pub(super) fn context_key(
    reads: &ContextReads,
    g: &GateFacts,
    connector: &Map<String, Value>,
) -> Option<Vec<u8>> {
    let fields = reads.gate;
    if reads.whole || fields & 1 != 0 {
        return None;
    }
    let mut key = Vec::with_capacity(32);
    key.push(fields);
    let wants = |bit: u8| fields & (1 << bit) != 0;
    let string = |key: &mut Vec<u8>, s: &str| {
        key.extend_from_slice(&s.len().to_le_bytes());
        key.extend_from_slice(s.as_bytes());
    };
    if wants(1) {
        string(&mut key, &g.listener);
    }
    if wants(2) {
        match g.peer_ip {
            IpAddr::V4(ip) => {
                key.push(4);
                key.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                key.push(6);
                key.extend_from_slice(&ip.octets());
            }
        }
    }
    if wants(3) {
        string(&mut key, &g.identity_provider);
    }
    if wants(4) {
        string(&mut key, &g.trust_anchor);
    }
    if wants(5) {
        key.extend_from_slice(&g.trust_anchor_age_days.to_le_bytes());
    }
    if wants(6) {
        key.extend_from_slice(&g.now_unix.to_le_bytes());
    }
    if wants(7) {
        key.push(u8::from(g.tls));
    }
    // The connector's values as JSON text, which determines the value.
    let value = |key: &mut Vec<u8>, name: &str, v: Option<&Value>| -> Option<()> {
        string(key, name);
        match v {
            None => key.push(0),
            Some(v) => {
                key.push(1);
                let text = serde_json::to_string(v).ok()?;
                string(key, &text);
            }
        }
        (key.len() <= MAX_CONTEXT_KEY).then_some(())
    };
    for name in &reads.keys {
        value(&mut key, name, connector.get(name))?;
    }
    Some(key)
}

/// A record: `{`, the field count, then each name (length-prefixed) and
/// value shape. Every shape is self-delimiting, so the encoding is
/// injective.
fn record_shape<'v>(
    count: usize,
    fields: impl Iterator<Item = (&'v String, &'v Value)>,
    out: &mut Vec<u8>,
) -> Option<()> {
    out.push(b'{');
    out.extend_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
    for (name, value) in fields {
        out.extend_from_slice(&u32::try_from(name.len()).ok()?.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        shape(value, out)?;
        if out.len() > MAX_VALIDATION_KEY {
            return None;
        }
    }
    Some(())
}

/// The shape of a value's literal reading; `None` where [`literal`] has no
/// reading.
fn shape(v: &Value, out: &mut Vec<u8>) -> Option<()> {
    match v {
        Value::Null => return None,
        Value::Bool(true) => out.push(b't'),
        Value::Bool(false) => out.push(b'f'),
        Value::Number(n) => {
            n.as_i64()?;
            out.push(b'l');
        }
        Value::String(_) => out.push(b's'),
        Value::Array(items) => {
            // `[`, then `+` and a shape per element (a repeat of the
            // previous element's shape is dropped), then `]`.
            out.push(b'[');
            let mut previous: Option<(usize, usize)> = None;
            for item in items {
                let start = out.len();
                out.push(b'+');
                shape(item, out)?;
                let end = out.len();
                match previous {
                    Some((s, e)) if out.get(s..e) == out.get(start..end) => out.truncate(start),
                    _ => previous = Some((start, end)),
                }
                if out.len() > MAX_VALIDATION_KEY {
                    return None;
                }
            }
            out.push(b']');
        }
        Value::Object(map) => {
            if map.keys().any(|k| k.starts_with("__")) {
                return None;
            }
            record_shape(map.len(), map.iter(), out)?;
        }
    }
    Some(())
}

fn literal(v: &Value) -> Option<RestrictedExpression> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => items
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()
            .map(RestrictedExpression::new_set),
        Value::Object(map) => {
            if map.keys().any(|k| k.starts_with("__")) {
                return None;
            }
            let fields = map
                .iter()
                .map(|(k, v)| Some((k.clone(), literal(v)?)))
                .collect::<Option<Vec<_>>>()?;
            RestrictedExpression::new_record(fields).ok()
        }
    }
}

/// Cedar's own schema-directed reading of the context (the fallback).
pub(super) fn schema_context(
    connector: &Map<String, Value>,
    gate: &GateFacts,
    schema: &Schema,
    action: &EntityUid,
) -> Result<Context, String> {
    let mut context = connector.clone();
    // The host's facts win over anything a connector put under `gate`.
    context.insert("gate".to_owned(), gate_json(gate));
    Context::from_json_value(Value::Object(context), Some((schema, action)))
        .map_err(|e| format!("invalid context: {e}"))
}

/// `context.gate` as Cedar JSON (for the schema-directed fallback).
fn gate_json(g: &GateFacts) -> Value {
    json!({
        "request_id": g.request_id,
        "listener": g.listener,
        "peer_ip": g.peer_ip.to_string(),
        "identity_provider": g.identity_provider,
        "trust_anchor": g.trust_anchor,
        "trust_anchor_age_days": g.trust_anchor_age_days,
        "now": rfc3339(g.now_unix),
        "tls": g.tls,
    })
}

/// The entities of one request, the principal's and resource's uids, and
/// the ancestors Cedar computed for them (the index needs them).
pub(super) struct RequestEntities {
    pub entities: Entities,
    pub principal: EntityUid,
    pub resource: EntityUid,
    pub principal_ancestors: Vec<EntityUid>,
    pub resource_ancestors: Vec<EntityUid>,
}

/// One side of a request's entities, as the caller described it.
pub(super) struct EntityInput<'a> {
    pub entity: &'a EntityRef,
    pub attributes: &'a Value,
    pub parents: &'a [EntityRef],
}

struct Memo {
    principal_attributes: Value,
    principal_parents: Vec<EntityRef>,
    resource_attributes: Value,
    resource_parents: Vec<EntityRef>,
    built: Arc<RequestEntities>,
    /// [`validation_key`]s of requests with these principal and resource
    /// that Cedar validated.
    validated: Vec<Box<[u8]>>,
    /// Plans by action ordinal.
    plans: Vec<(u32, Plan)>,
}

impl Memo {
    fn matches(&self, p: &EntityInput<'_>, r: &EntityInput<'_>) -> bool {
        &self.principal_attributes == p.attributes
            && self.principal_parents == p.parents
            && &self.resource_attributes == r.attributes
            && self.resource_parents == r.parents
    }
}

/// How to decide one action on one memoized (principal, resource) pair:
/// everything here is a function of the entities and the action, which the
/// memo entry and the action ordinal fix.
#[derive(Clone)]
pub(super) struct Plan {
    /// The index's slice for the request.
    pub slice: Arc<Slice>,
    /// The last request the fast path built for this pair and action, by
    /// its [`context_key`].
    last: Arc<Mutex<Option<Remembered>>>,
}

/// A request and its [`context_key`].
type Remembered = (Box<[u8]>, Request);

impl Plan {
    pub fn new(slice: Arc<Slice>) -> Self {
        Self {
            slice,
            last: Arc::default(),
        }
    }

    /// The request last stored under `key`.
    pub fn request(&self, key: &[u8]) -> Option<Request> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((k, request)) if **k == *key => Some(request.clone()),
            _ => None,
        }
    }

    /// Stores `request` under `key`, replacing the previous one.
    pub fn remember(&self, key: Vec<u8>, request: Request) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((key.into_boxed_slice(), request));
    }
}

/// What the memo holds for a request.
pub(super) struct Found {
    pub entities: Arc<RequestEntities>,
    /// Whether a request with the same [`validation_key`] and entities
    /// passed Cedar's validation.
    pub validated: bool,
    /// The plan for the request's action, if one was stored.
    pub plan: Option<Plan>,
}

/// Memoized entity sets by principal, then resource.
#[derive(Default)]
pub(super) struct EntityCache {
    memo: Mutex<Memos>,
}

#[derive(Default)]
struct Memos {
    count: usize,
    by_principal: HashMap<EntityRef, HashMap<EntityRef, Memo>>,
}

impl Memos {
    /// The entry for exactly these entities, if it is still the one that
    /// built `built`.
    fn entry_of(
        &mut self,
        built: &Arc<RequestEntities>,
        principal: &EntityRef,
        resource: &EntityRef,
    ) -> Option<&mut Memo> {
        self.by_principal
            .get_mut(principal)
            .and_then(|by_resource| by_resource.get_mut(resource))
            .filter(|m| Arc::ptr_eq(&m.built, built))
    }
}

impl EntityCache {
    /// The schema-checked entities for this principal and resource, whether
    /// a request with `key` (a [`validation_key`]) and these entities has
    /// been validated, and the plan for `action` (an ordinal). `uid` turns a
    /// reference into a uid, failing for a type the schema does not declare.
    pub fn get(
        &self,
        schema: &Schema,
        uid: impl Fn(&EntityRef, &str) -> Result<EntityUid, String>,
        p: &EntityInput<'_>,
        r: &EntityInput<'_>,
        key: Option<&[u8]>,
        action: u32,
    ) -> Result<Found, String> {
        {
            let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = memo
                .by_principal
                .get(p.entity)
                .and_then(|by_resource| by_resource.get(r.entity))
                && m.matches(p, r)
            {
                return Ok(Found {
                    entities: Arc::clone(&m.built),
                    validated: key.is_some_and(|key| m.validated.iter().any(|k| **k == *key)),
                    plan: m
                        .plans
                        .iter()
                        .find(|(a, _)| *a == action)
                        .map(|(_, plan)| plan.clone()),
                });
            }
        }
        let principal = uid(p.entity, "principal")?;
        let resource = uid(r.entity, "resource")?;
        let built = Arc::new(build_entities(schema, principal, resource, p, r)?);
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if memo.count >= ENTITY_CACHE_CAPACITY {
            *memo = Memos::default();
        }
        let entry = Memo {
            principal_attributes: p.attributes.clone(),
            principal_parents: p.parents.to_vec(),
            resource_attributes: r.attributes.clone(),
            resource_parents: r.parents.to_vec(),
            built: Arc::clone(&built),
            validated: Vec::new(),
            plans: Vec::new(),
        };
        if memo
            .by_principal
            .entry(p.entity.clone())
            .or_default()
            .insert(r.entity.clone(), entry)
            .is_none()
        {
            memo.count += 1;
        }
        Ok(Found {
            entities: built,
            validated: false,
            plan: None,
        })
    }

    /// Records that Cedar validated a request with `key` and the entities
    /// `built` (as [`Self::get`] returned them for `principal` and
    /// `resource`). Does nothing if the memo has moved on.
    pub fn mark_validated(
        &self,
        built: &Arc<RequestEntities>,
        principal: &EntityRef,
        resource: &EntityRef,
        key: Vec<u8>,
    ) {
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = memo.entry_of(built, principal, resource) else {
            return;
        };
        if m.validated.iter().any(|k| **k == *key) {
            return;
        }
        if m.validated.len() >= VALIDATED_PER_ENTITY_SET {
            m.validated.clear();
        }
        m.validated.push(key.into_boxed_slice());
    }

    /// Stores the plan for `action` on the entities `built`; returns it.
    pub fn store_plan(
        &self,
        built: &Arc<RequestEntities>,
        principal: &EntityRef,
        resource: &EntityRef,
        action: u32,
        plan: Plan,
    ) -> Plan {
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = memo.entry_of(built, principal, resource) {
            if let Some((_, existing)) = m.plans.iter().find(|(a, _)| *a == action) {
                return existing.clone();
            }
            if m.plans.len() >= PLANS_PER_ENTITY_SET {
                m.plans.clear();
            }
            m.plans.push((action, plan.clone()));
        }
        plan
    }
}

/// Cedar entity JSON parsed with the schema: attributes may use implicit
/// entity references and extension values, and every entity is checked for
/// conformance (attribute types, parent types). The schema adds the action
/// entities.
fn build_entities(
    schema: &Schema,
    principal: EntityUid,
    resource: EntityUid,
    p: &EntityInput<'_>,
    r: &EntityInput<'_>,
) -> Result<RequestEntities, String> {
    let entities = Entities::from_json_value(json!([entity_json(p), entity_json(r)]), Some(schema))
        .map_err(|e| format!("invalid entities: {e}"))?;
    let ancestors = |uid: &EntityUid| -> Vec<EntityUid> {
        entities
            .ancestors(uid)
            .map(|a| a.cloned().collect())
            .unwrap_or_default()
    };
    Ok(RequestEntities {
        principal_ancestors: ancestors(&principal),
        resource_ancestors: ancestors(&resource),
        principal,
        resource,
        entities,
    })
}

fn entity_json(e: &EntityInput<'_>) -> Value {
    let attrs = if e.attributes.is_null() {
        Value::Object(Map::new())
    } else {
        e.attributes.clone()
    };
    json!({
        "uid": { "type": e.entity.type_name, "id": e.entity.id },
        "attrs": attrs,
        "parents": e.parents.iter().map(|p| json!({ "type": p.type_name, "id": p.id })).collect::<Vec<_>>(),
    })
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ` (the form Cedar's `datetime`
/// accepts), without a date library: Howard Hinnant's days-to-civil.
pub(super) fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
