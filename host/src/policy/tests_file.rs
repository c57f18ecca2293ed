//! Policy tests: a TOML file of requests with the decisions the security
//! team expects, run against a loaded policy set by `intentgate policy test`
//! and in CI.
//!
//! Format (see also `docs/policies.md`, section "Policy tests"):
//!
//! ```toml
//! [[case]]
//! name = "payments reads orders"
//! principal = 'Aws::Role::"arn:aws:iam::111122223333:role/payments"'
//! principal_parents = ['Aws::Account::"111122223333"']   # optional
//! principal_attributes = { task_id = "abc" }              # optional, Cedar entity attributes
//! action = 'Spanner::Action::"read"'
//! resource = 'Spanner::Database::"projects/p/instances/i/databases/orders"'
//! resource_parents = []                                   # optional
//! resource_attributes = {}                                # optional
//! context = { sql = "SELECT 1" }                          # optional, without `gate`
//! gate = { trust_anchor_age_days = 45 }                   # optional, overrides the default gate
//! decision = "allow"                                      # "allow" or "deny"
//! determining = ["payments-read-orders"]                  # optional, exact set of policy ids
//! annotations = { database_role = "orders_reader" }       # optional, exact values per key
//! expect_errors = false                                   # optional; see below
//! ```
//!
//! A case whose request produces errors (a policy failed to evaluate, or the
//! request does not match the schema) fails unless it sets
//! `expect_errors = true`: otherwise a typo in a test that expects a deny
//! would pass silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::EntityUid;
use serde::Deserialize;
use toml::Spanned;

use super::{Decision, LoadedPolicies, PolicyDiagnostic, Query};
use crate::model::{AuthzRequest, EntityRef, GateFacts};

/// The outcome of one policy test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTestReport {
    /// The test file.
    pub file: PathBuf,
    /// Every case, in file order.
    pub cases: Vec<PolicyTestCase>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTestCase {
    /// The case's `name`.
    pub name: String,
    /// 1-based line of the case's `[[case]]` table.
    pub line: usize,
    /// Why the case failed; empty when it passed.
    pub failures: Vec<String>,
    /// What the engine decided.
    pub decision: Decision,
}

impl PolicyTestCase {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl PolicyTestReport {
    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.cases.iter().all(PolicyTestCase::passed)
    }
}

impl fmt::Display for PolicyTestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            if case.passed() {
                writeln!(f, "ok    {}", case.name)?;
            } else {
                writeln!(
                    f,
                    "FAIL  {} ({}:{})",
                    case.name,
                    self.file.display(),
                    case.line
                )?;
                for failure in &case.failures {
                    writeln!(f, "        {failure}")?;
                }
            }
        }
        write!(
            f,
            "{}: {} passed, {} failed",
            self.file.display(),
            self.passed(),
            self.failed()
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    case: Vec<Spanned<CaseSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    principal: Spanned<String>,
    #[serde(default)]
    principal_parents: Vec<Spanned<String>>,
    #[serde(default)]
    principal_attributes: toml::Table,
    action: Spanned<String>,
    resource: Spanned<String>,
    #[serde(default)]
    resource_parents: Vec<Spanned<String>>,
    #[serde(default)]
    resource_attributes: toml::Table,
    #[serde(default)]
    context: toml::Table,
    #[serde(default)]
    gate: GateSpec,
    decision: Spanned<String>,
    determining: Option<Vec<String>>,
    #[serde(default)]
    annotations: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    expect_errors: bool,
}

/// Overrides of the default gate facts.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GateSpec {
    request_id: Option<String>,
    listener: Option<String>,
    peer_ip: Option<Spanned<String>>,
    identity_provider: Option<String>,
    trust_anchor: Option<String>,
    trust_anchor_age_days: Option<i64>,
    now_unix: Option<u64>,
    tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_set(self) -> BTreeSet<String> {
        match self {
            Self::One(v) => BTreeSet::from([v]),
            Self::Many(v) => v.into_iter().collect(),
        }
    }
}

/// A case ready to run.
struct Case {
    name: String,
    line: usize,
    principal: EntityRef,
    principal_parents: Vec<EntityRef>,
    principal_attributes: serde_json::Value,
    request: AuthzRequest,
    gate: GateFacts,
    expect_allow: bool,
    determining: Option<Vec<String>>,
    annotations: BTreeMap<String, BTreeSet<String>>,
    expect_errors: bool,
}

/// Runs every case of a policy test file against `policies`.
///
/// Errors in the file itself (TOML syntax, unknown keys, malformed entity
/// references, a decision other than `allow`/`deny`) are returned as
/// diagnostics with the file and line; failing cases are not errors, they
/// are in the report.
pub fn run_policy_tests(
    policies: &LoadedPolicies,
    file: &Path,
) -> Result<PolicyTestReport, Vec<PolicyDiagnostic>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![PolicyDiagnostic::new(format!("cannot read policy test file: {e}")).in_file(file)]
    })?;
    let cases = parse(file, &text)?;
    let cases = cases.into_iter().map(|case| run(policies, case)).collect();
    Ok(PolicyTestReport {
        file: file.to_path_buf(),
        cases,
    })
}

fn run(policies: &LoadedPolicies, case: Case) -> PolicyTestCase {
    let decision = policies.authorize(&Query {
        principal: &case.principal,
        principal_attributes: &case.principal_attributes,
        principal_parents: &case.principal_parents,
        request: &case.request,
        gate: &case.gate,
    });
    let mut failures = Vec::new();
    let word = |allowed: bool| if allowed { "allow" } else { "deny" };
    if decision.allowed != case.expect_allow {
        failures.push(format!(
            "expected {}, got {} (determining: [{}])",
            word(case.expect_allow),
            word(decision.allowed),
            decision.determining.join(", ")
        ));
    }
    if !decision.errors.is_empty() && !case.expect_errors {
        failures.push(format!(
            "the request produced errors (set `expect_errors = true` if that is the point): {}",
            decision.errors.join("; ")
        ));
    }
    if decision.errors.is_empty() && case.expect_errors {
        failures.push("expected errors, got none".to_owned());
    }
    if let Some(expected) = &case.determining {
        let mut expected = expected.clone();
        expected.sort_unstable();
        if expected != decision.determining {
            failures.push(format!(
                "expected determining policies [{}], got [{}]",
                expected.join(", "),
                decision.determining.join(", ")
            ));
        }
    }
    for (key, expected) in &case.annotations {
        let got = decision.annotations.get(key).cloned().unwrap_or_default();
        if &got != expected {
            failures.push(format!(
                "expected annotation `{key}` = {{{}}}, got {{{}}}",
                expected.iter().cloned().collect::<Vec<_>>().join(", "),
                got.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    PolicyTestCase {
        name: case.name,
        line: case.line,
        failures,
        decision,
    }
}

fn parse(file: &Path, text: &str) -> Result<Vec<Case>, Vec<PolicyDiagnostic>> {
    let spec: TestFile = toml::from_str(text).map_err(|e| {
        let diag = PolicyDiagnostic::new(format!("invalid policy test file: {}", e.message()))
            .in_file(file);
        vec![match e.span() {
            Some(span) => diag.at_offset(text, span.start),
            None => diag,
        }]
    })?;
    let mut errors = Vec::new();
    let mut cases = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for spanned in spec.case {
        let start = spanned.span().start;
        let line = super::diagnostic::line_col(text, start).0;
        let spec = spanned.into_inner();
        if let Some(first) = names.insert(spec.name.clone(), line) {
            errors.push(
                PolicyDiagnostic::new(format!("duplicate case name `{}`", spec.name))
                    .in_file(file)
                    .at_offset(text, start)
                    .with_help(format!("the first case with this name is at line {first}")),
            );
        }
        let mut err = |at: usize, message: String, help: &str| {
            errors.push(
                PolicyDiagnostic::new(message)
                    .in_file(file)
                    .at_offset(text, at)
                    .with_help(help),
            );
        };
        let mut entity = |s: &Spanned<String>| match EntityUid::from_str(s.get_ref()) {
            Ok(uid) => Some(EntityRef::new(
                uid.type_name().to_string(),
                uid.id().unescaped(),
            )),
            Err(_) => {
                err(
                    s.span().start,
                    format!("`{}` is not an entity reference", s.get_ref()),
                    "write it as a TOML literal string: 'Type::\"id\"'",
                );
                None
            }
        };
        let principal = entity(&spec.principal);
        let principal_parents: Vec<Option<EntityRef>> =
            spec.principal_parents.iter().map(&mut entity).collect();
        let action = entity(&spec.action);
        let resource = entity(&spec.resource);
        let resource_parents: Vec<Option<EntityRef>> =
            spec.resource_parents.iter().map(&mut entity).collect();
        let expect_allow = match spec.decision.get_ref().as_str() {
            "allow" => Some(true),
            "deny" => Some(false),
            other => {
                err(
                    spec.decision.span().start,
                    format!("unknown decision `{other}`"),
                    "write \"allow\" or \"deny\"",
                );
                None
            }
        };
        let peer_ip = match &spec.gate.peer_ip {
            None => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(ip) => match ip.get_ref().parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    err(
                        ip.span().start,
                        format!("`{}` is not an IP address", ip.get_ref()),
                        "",
                    );
                    None
                }
            },
        };
        let (Some(principal), Some(action), Some(resource), Some(expect_allow), Some(peer_ip)) =
            (principal, action, resource, expect_allow, peer_ip)
        else {
            continue;
        };
        let (Some(principal_parents), Some(resource_parents)) = (
            principal_parents.into_iter().collect::<Option<Vec<_>>>(),
            resource_parents.into_iter().collect::<Option<Vec<_>>>(),
        ) else {
            continue;
        };
        let gate = spec.gate;
        let (Ok(principal_attributes), Ok(resource_attributes), Ok(context)) = (
            json_object(spec.principal_attributes),
            json_object(spec.resource_attributes),
            json_object(spec.context),
        ) else {
            errors.push(
                PolicyDiagnostic::new("attributes and context must convert to JSON")
                    .in_file(file)
                    .at_offset(text, start)
                    .with_help("use strings, numbers, booleans, arrays and tables (no TOML dates)"),
            );
            continue;
        };
        cases.push(Case {
            line,
            principal,
            principal_parents,
            principal_attributes: serde_json::Value::Object(principal_attributes),
            request: AuthzRequest {
                action,
                resource,
                resource_attributes: serde_json::Value::Object(resource_attributes),
                resource_parents,
                context,
            },
            gate: GateFacts {
                request_id: gate
                    .request_id
                    .unwrap_or_else(|| format!("policy-test:{}", spec.name)),
                listener: gate.listener.unwrap_or_else(|| "policy-test".to_owned()),
                peer_ip,
                identity_provider: gate
                    .identity_provider
                    .unwrap_or_else(|| "policy-test".to_owned()),
                trust_anchor: gate
                    .trust_anchor
                    .unwrap_or_else(|| "policy-test".to_owned()),
                trust_anchor_age_days: gate.trust_anchor_age_days.unwrap_or(0),
                now_unix: gate.now_unix.unwrap_or_else(now_unix),
                tls: gate.tls.unwrap_or(true),
            },
            expect_allow,
            determining: spec.determining,
            annotations: spec
                .annotations
                .into_iter()
                .map(|(k, v)| (k, v.into_set()))
                .collect(),
            expect_errors: spec.expect_errors,
            name: spec.name,
        });
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// A TOML table as the JSON object Cedar parses. TOML dates have no JSON
/// form and fail.
fn json_object(table: toml::Table) -> Result<serde_json::Map<String, serde_json::Value>, ()> {
    if table.values().any(has_datetime) {
        return Err(());
    }
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(()),
    }
}

fn has_datetime(v: &toml::Value) -> bool {
    match v {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(has_datetime),
        toml::Value::Table(t) => t.values().any(has_datetime),
        _ => false,
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
