//! From a verified role session to the Cedar principal the host sees:
//!
//! * principal `Aws::Role::"arn:<partition>:iam::<account>:role/<RoleName>"`
//!   (the canonical role ARN; STS does not say the role's path, so it is
//!   not in the id);
//! * parent `Aws::Account::"<account>"`;
//! * attributes `{ account, role_name, session_name, role_unique_id, arn }`
//!   (`session_name` is the ECS task id for task roles, `arn` the
//!   assumed-role ARN STS answered);
//! * `expires-at` = `X-Amz-Date` + `max_clock_skew_seconds`;
//! * `trust-anchor` = the account id.

use serde_json::{Map, Value};

use crate::verify::Verified;

pub const ROLE_TYPE: &str = "Aws::Role";
pub const ACCOUNT_TYPE: &str = "Aws::Account";

/// The plugin's Cedar schema fragment.
pub const CEDAR_SCHEMA: &str = "namespace Aws {\n  entity Account;\n  entity Role in [Account] = { account: String, role_name: String, session_name: String, role_unique_id: String, arn: String };\n}\n";

/// An identity, independent of the WIT bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `(type, id)` of the principal.
    pub principal: (String, String),
    /// `(type, id)` of each parent.
    pub parents: Vec<(String, String)>,
    pub attributes_json: String,
    pub expires_at: u64,
    pub trust_anchor: String,
}

/// Builds the principal for a verified session.
pub fn principal(v: &Verified) -> Principal {
    let s = &v.session;
    let mut attrs = Map::new();
    for (key, value) in [
        ("account", s.account.clone()),
        ("role_name", s.role_name.clone()),
        ("session_name", s.session_name.clone()),
        ("role_unique_id", v.role_unique_id.clone()),
        ("arn", s.assumed_role_arn()),
    ] {
        attrs.insert(key.to_string(), Value::String(value));
    }
    Principal {
        principal: (ROLE_TYPE.to_string(), s.role_arn()),
        parents: vec![(ACCOUNT_TYPE.to_string(), s.account.clone())],
        // Bounded: every value is a checked name of at most 64 characters.
        attributes_json: Value::Object(attrs).to_string(),
        expires_at: v.expires_at,
        trust_anchor: s.account.clone(),
    }
}
