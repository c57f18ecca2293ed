//! What a policy's conditions read of the request context, so the fast
//! path can hand Cedar only that part of the context.
//!
//! Building the context is the largest per-request cost left once the
//! request's conformance is known (`context.gate` alone is an 8-field
//! record with an `ipaddr` and a `datetime`, which Cedar parses on every
//! build). Most conditions read one or two fields, e.g.
//! `context.gate.trust_anchor_age_days > 30`.
//!
//! Equivalence. Cedar's evaluator reads the context only through the
//! variable `context`. If every occurrence of `context` in a condition is
//! the record operand of an attribute access or a `has` test with a literal
//! name (`context.k`, `context has k`, `context["k"]`), the condition's
//! value and errors depend on the context only through the presence and the
//! value of those attributes `k`. The same holds one level down for
//! `context.gate`: if it only occurs as the record operand of `.f` or
//! `has f`, only the presence and value of those fields `f` matter. A
//! context that keeps every attribute read (with its whole value) and drops
//! the others therefore gives every sub-expression the same value or the
//! same error, and so the same decision, determining policies and errors.
//! Anything else (`context` or `context.gate` used as a value, an access
//! this walker does not recognise, a policy it cannot serialise) reads the
//! whole of it: [`ContextReads::WHOLE`].
//!
//! The walk is over Cedar's JSON form of the policy (EST); unknown node
//! kinds are searched for `context` generically, so a form this module does
//! not know about can only make it read more, never less.

use cedar_policy::Policy;
use serde_json::Value;

/// The fields of `Intentgate::Gate`, in the order of the bits in
/// [`ContextReads::gate`]. The host always fills in all of them.
pub(super) const GATE_FIELDS: [&str; 8] = [
    "request_id",
    "listener",
    "peer_ip",
    "identity_provider",
    "trust_anchor",
    "trust_anchor_age_days",
    "now",
    "tls",
];

/// Every gate field.
pub(super) const ALL_GATE_FIELDS: u8 = u8::MAX;

/// The part of the context a set of conditions can observe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ContextReads {
    /// The whole context (every connector attribute and the whole gate).
    pub whole: bool,
    /// Connector attributes read (besides `gate`), sorted and unique.
    pub keys: Vec<String>,
    /// Gate fields read, one bit per [`GATE_FIELDS`] entry.
    pub gate: u8,
}

impl ContextReads {
    /// Reads everything: the safe answer whenever in doubt.
    pub const WHOLE: Self = Self {
        whole: true,
        keys: Vec::new(),
        gate: ALL_GATE_FIELDS,
    };

    /// What the conditions of `policy` read.
    pub fn of(policy: &Policy) -> Self {
        if !policy.has_non_scope_constraint() {
            return Self::default();
        }
        let Ok(json) = policy.to_json() else {
            return Self::WHOLE;
        };
        let Some(conditions) = json.get("conditions").and_then(Value::as_array) else {
            return Self::WHOLE;
        };
        let mut reads = Self::default();
        for condition in conditions {
            match condition.get("body") {
                Some(body) => reads.expr(body),
                None => return Self::WHOLE,
            }
            if reads.whole {
                return Self::WHOLE;
            }
        }
        reads.keys.sort_unstable();
        reads.keys.dedup();
        reads
    }

    /// Adds what `other` reads.
    pub fn union(&mut self, other: &Self) {
        if self.whole || other.whole {
            *self = Self::WHOLE;
            return;
        }
        self.gate |= other.gate;
        self.keys.extend(other.keys.iter().cloned());
        self.keys.sort_unstable();
        self.keys.dedup();
    }

    fn key(&mut self, key: &str) {
        if key != "gate" {
            self.keys.push(key.to_owned());
        }
    }

    fn gate_field(&mut self, field: &str) -> bool {
        match GATE_FIELDS.iter().position(|f| *f == field) {
            Some(bit) => {
                self.gate |= 1 << bit;
                true
            }
            None => false,
        }
    }

    /// Walks one EST expression.
    fn expr(&mut self, e: &Value) {
        if self.whole {
            return;
        }
        let Some((kind, body)) = single_entry(e) else {
            // Not an expression node: search it.
            self.search(e);
            return;
        };
        match kind {
            "Var" => {
                if body.as_str() == Some("context") {
                    self.whole = true;
                }
            }
            // Literals contain no variables.
            "Value" => {}
            "Record" => match body.as_object() {
                Some(fields) => fields.values().for_each(|v| self.expr(v)),
                None => self.search(body),
            },
            "." | "has" => self.access(kind == "has", body),
            _ => self.search(body),
        }
    }

    /// `left.attr` or `left has attr` (`attr` may be a path for `has`).
    fn access(&mut self, has: bool, body: &Value) {
        let (Some(left), Some(attr)) = (body.get("left"), body.get("attr")) else {
            self.search(body);
            return;
        };
        if is_context(left) {
            match (attr.as_str(), attr.as_array()) {
                // `context.gate` used as a value.
                (Some("gate"), _) if !has => self.gate = ALL_GATE_FIELDS,
                (Some(key), _) => self.key(key),
                // `context has a.b.c`: reads `context.a` (for `gate`, the
                // presence of field `b`).
                (None, Some(path)) if has => {
                    match path.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                        Some(path) => match path.as_slice() {
                            [] => self.whole = true,
                            ["gate"] => {}
                            ["gate", field] => {
                                // An unknown field is absent either way.
                                self.gate_field(field);
                            }
                            ["gate", ..] => self.gate = ALL_GATE_FIELDS,
                            [key, ..] => self.key(key),
                        },
                        None => self.whole = true,
                    }
                }
                _ => self.whole = true,
            }
            return;
        }
        if is_context_gate(left) {
            let field = match (attr.as_str(), attr.as_array()) {
                (Some(field), _) => Some(field),
                // `context.gate has f.g`: reads field `f` whole.
                (None, Some(path)) if has => path.first().and_then(Value::as_str),
                _ => None,
            };
            match field {
                Some(field) => {
                    // A `has` test of an unknown field is false either way;
                    // reading one would be an error whose text we do not
                    // want to depend on: take the whole gate.
                    if !self.gate_field(field) && !has {
                        self.gate = ALL_GATE_FIELDS;
                    }
                }
                None => self.gate = ALL_GATE_FIELDS,
            }
            return;
        }
        self.expr(left);
    }

    /// Any JSON that is not a recognised node: every object in it with one
    /// entry is walked as an expression, and every other object or array is
    /// searched, so `context` cannot hide in it.
    fn search(&mut self, v: &Value) {
        match v {
            Value::Object(map) if map.len() == 1 => self.expr(v),
            Value::Object(map) => map.values().for_each(|v| self.search(v)),
            Value::Array(items) => items.iter().for_each(|v| self.search(v)),
            _ => {}
        }
    }
}

fn single_entry(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn is_context(v: &Value) -> bool {
    single_entry(v).is_some_and(|(kind, body)| kind == "Var" && body.as_str() == Some("context"))
}

/// `context.gate` (or `context["gate"]`).
fn is_context_gate(v: &Value) -> bool {
    single_entry(v).is_some_and(|(kind, body)| {
        kind == "."
            && body.get("left").is_some_and(is_context)
            && body.get("attr").and_then(Value::as_str) == Some("gate")
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn reads(condition: &str) -> ContextReads {
        let text = format!("permit(principal, action, resource) {condition};");
        ContextReads::of(&Policy::from_str(&text).unwrap_or_else(|e| panic!("{e}")))
    }

    fn gate(fields: &[&str]) -> u8 {
        fields
            .iter()
            .map(|f| 1 << GATE_FIELDS.iter().position(|g| g == f).unwrap_or(99))
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn reads_only_what_is_accessed() {
        assert_eq!(reads(""), ContextReads::default());
        assert_eq!(
            reads("when { principal == resource }"),
            ContextReads::default()
        );
        assert_eq!(
            reads("when { context.gate.trust_anchor_age_days > 30 }"),
            ContextReads {
                whole: false,
                keys: vec![],
                gate: gate(&["trust_anchor_age_days"]),
            }
        );
        assert_eq!(
            reads(
                "when { context has gate.now && context[\"gate\"][\"tls\"] && context.gate has peer_ip } unless { context has client && context.client.isInRange(ip(\"10.0.0.0/8\")) && context.n > 1 }"
            ),
            ContextReads {
                whole: false,
                keys: vec!["client".into(), "n".into()],
                gate: gate(&["now", "tls", "peer_ip"]),
            }
        );
        // A `has` test of an unknown gate field needs nothing.
        assert_eq!(reads("when { context.gate has nope }").gate, 0);
    }

    #[test]
    fn whole_values_are_read_whole() {
        for condition in [
            "when { context == context }",
            "when { {\"Var\": context}.Var == {} }",
            "when { [context].isEmpty() }",
            "when { if context.flag then context else {} == {} }",
        ] {
            assert_eq!(reads(condition), ContextReads::WHOLE, "{condition}");
        }
        for condition in [
            "when { context.gate == context.gate }",
            "when { context.gate.nope == 1 }",
            "when { context has gate.now.x }",
        ] {
            let r = reads(condition);
            assert!(!r.whole && r.gate == ALL_GATE_FIELDS, "{condition}: {r:?}");
        }
    }

    #[test]
    fn union_merges() {
        let mut a = reads("when { context.a && context.gate.tls }");
        a.union(&reads("when { context.b || context.a }"));
        assert_eq!(a.keys, ["a", "b"]);
        assert_eq!(a.gate, gate(&["tls"]));
        a.union(&ContextReads::WHOLE);
        assert_eq!(a, ContextReads::WHOLE);
    }
}
