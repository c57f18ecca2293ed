//! From verified claims to the Cedar principal the host sees.
//!
//! * principal `Oidc::Subject::"<iss>#<sub>"`: issuer identifiers have no
//!   fragment, so the first `#` splits the id unambiguously and subjects of
//!   different issuers never collide;
//! * parents `Oidc::Issuer::"<iss>"` and, with `groups_claim`,
//!   `Oidc::Group::"<iss>#<group>"`;
//! * attributes `{ sub, iss, email?, scopes }`.

use serde_json::{Map, Value};

use crate::error::AuthFailure;
use crate::jwt::claims::VerifiedClaims;

pub const SUBJECT_TYPE: &str = "Oidc::Subject";
pub const ISSUER_TYPE: &str = "Oidc::Issuer";
pub const GROUP_TYPE: &str = "Oidc::Group";
/// The WIT contract's cap on `attributes-json`.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// The plugin's Cedar schema fragment.
pub const CEDAR_SCHEMA: &str = "namespace Oidc {\n  entity Issuer;\n  entity Group;\n  entity Subject in [Issuer, Group] = { sub: String, iss: String, email?: String, scopes: Set<String> };\n}\n";

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

/// Builds the principal for verified claims.
pub fn principal(claims: &VerifiedClaims) -> Result<Principal, AuthFailure> {
    let iss = &claims.iss;
    let mut parents = vec![(ISSUER_TYPE.to_string(), iss.clone())];
    parents.extend(
        claims
            .groups
            .iter()
            .map(|g| (GROUP_TYPE.to_string(), format!("{iss}#{g}"))),
    );

    let mut attrs = Map::new();
    attrs.insert("sub".to_string(), Value::String(claims.sub.clone()));
    attrs.insert("iss".to_string(), Value::String(iss.clone()));
    if let Some(email) = &claims.email {
        attrs.insert("email".to_string(), Value::String(email.clone()));
    }
    attrs.insert(
        "scopes".to_string(),
        Value::Array(claims.scopes.iter().cloned().map(Value::String).collect()),
    );
    let attributes_json = Value::Object(attrs).to_string();
    if attributes_json.len() > MAX_ATTRIBUTES_BYTES {
        return Err(AuthFailure::Invalid(format!(
            "the token's attributes take {} bytes, over the {MAX_ATTRIBUTES_BYTES}-byte limit",
            attributes_json.len()
        )));
    }

    Ok(Principal {
        principal: (SUBJECT_TYPE.to_string(), format!("{iss}#{}", claims.sub)),
        parents,
        attributes_json,
        expires_at: claims.exp,
        trust_anchor: iss.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> VerifiedClaims {
        VerifiedClaims {
            iss: "https://id.example.com".to_string(),
            sub: "alice#1".to_string(),
            exp: 1_700_000_600,
            email: Some("a@example.com".to_string()),
            scopes: vec!["read".to_string(), "write".to_string()],
            groups: vec!["admins".to_string()],
        }
    }

    #[test]
    fn builds_the_principal() {
        let p = principal(&claims()).unwrap();
        assert_eq!(
            p.principal,
            (
                "Oidc::Subject".to_string(),
                "https://id.example.com#alice#1".to_string()
            )
        );
        assert_eq!(
            p.parents,
            vec![
                (
                    "Oidc::Issuer".to_string(),
                    "https://id.example.com".to_string()
                ),
                (
                    "Oidc::Group".to_string(),
                    "https://id.example.com#admins".to_string()
                ),
            ]
        );
        let attrs: Value = serde_json::from_str(&p.attributes_json).unwrap();
        assert_eq!(
            attrs,
            serde_json::json!({"sub":"alice#1","iss":"https://id.example.com","email":"a@example.com","scopes":["read","write"]})
        );
        assert_eq!(p.expires_at, 1_700_000_600);
        assert_eq!(p.trust_anchor, "https://id.example.com");
    }

    #[test]
    fn email_only_when_present_and_size_cap() {
        let mut c = claims();
        c.email = None;
        c.groups.clear();
        let p = principal(&c).unwrap();
        assert!(!p.attributes_json.contains("email"));
        assert_eq!(p.parents.len(), 1);
        c.scopes = (0..3000).map(|i| format!("scope{i}")).collect();
        assert!(
            principal(&c)
                .unwrap_err()
                .reason()
                .contains("over the 16384-byte limit")
        );
    }
}
