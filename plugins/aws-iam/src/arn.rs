//! Step 6: the ARN STS answered. Only role sessions are accepted:
//! `arn:<partition>:sts::<account>:assumed-role/<RoleName>/<SessionName>`.
//! IAM users, the root user, federated users and anything else are refused:
//! workloads run as roles (an ECS task role's session name is the task id).
//! STS drops the role's path from the assumed-role ARN, so the canonical role
//! ARN is `arn:<partition>:iam::<account>:role/<RoleName>` without it.

use crate::config::is_account_id;
use crate::error::{AuthFailure, quote};

/// A verified role session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSession {
    pub partition: String,
    pub account: String,
    pub role_name: String,
    pub session_name: String,
}

impl RoleSession {
    /// `arn:<partition>:iam::<account>:role/<RoleName>` (the path is lost).
    pub fn role_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition, self.account, self.role_name
        )
    }

    /// `arn:<partition>:sts::<account>:assumed-role/<RoleName>/<SessionName>`.
    pub fn assumed_role_arn(&self) -> String {
        format!(
            "arn:{}:sts::{}:assumed-role/{}/{}",
            self.partition, self.account, self.role_name, self.session_name
        )
    }
}

/// IAM role (and session) name characters: `[A-Za-z0-9+=,.@_-]`.
pub fn is_role_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-')
}

fn is_name(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(is_role_name_byte)
}

fn is_partition(s: &str) -> bool {
    s == "aws"
        || s.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 16
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Parses the ARN from STS. An ARN that is not one at all is STS's fault
/// (`unavailable`); a well-formed ARN of another principal kind is refused
/// as `untrusted`.
pub fn parse(arn: &str) -> Result<RoleSession, AuthFailure> {
    let odd = || {
        AuthFailure::Unavailable(format!(
            "STS answered an ARN that cannot be read: {}",
            quote(arn)
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, resource] = parts[..] else {
        return Err(odd());
    };
    if !is_partition(partition) || !region.is_empty() || !is_account_id(account) {
        return Err(odd());
    }
    let kind = resource.split('/').next().unwrap_or_default();
    if service != "sts" || kind != "assumed-role" {
        return Err(AuthFailure::Untrusted(format!(
            "the caller is {} ({}), not an IAM role session; only assumed roles are accepted",
            quote(arn),
            describe(service, kind)
        )));
    }
    let names: Vec<&str> = resource.split('/').collect();
    let ["assumed-role", role_name, session_name] = names[..] else {
        return Err(odd());
    };
    if !is_name(role_name, 1, 64) || !is_name(session_name, 2, 64) {
        return Err(odd());
    }
    Ok(RoleSession {
        partition: partition.to_string(),
        account: account.to_string(),
        role_name: role_name.to_string(),
        session_name: session_name.to_string(),
    })
}

fn describe(service: &str, kind: &str) -> &'static str {
    match (service, kind) {
        (_, "user") => "an IAM user",
        ("iam", "root") => "the account's root user",
        ("sts", "federated-user") => "a federated user",
        ("iam", "role") => "a role, not a role session",
        _ => "an unknown principal kind",
    }
}

/// Splits STS's `UserId` for a role session, `<RoleUniqueId>:<SessionName>`,
/// and returns the role's unique id (`AROA…`) after checking the session name
/// agrees with the ARN.
pub fn role_unique_id<'a>(user_id: &'a str, session: &RoleSession) -> Result<&'a str, AuthFailure> {
    let odd = |why: &str| {
        AuthFailure::Unavailable(format!(
            "STS answered the UserId {} for {}: {why}",
            quote(user_id),
            quote(&session.assumed_role_arn())
        ))
    };
    let Some((unique_id, session_name)) = user_id.split_once(':') else {
        return Err(odd("expected <role id>:<session name>"));
    };
    let id_ok = unique_id.len() > 4
        && unique_id.len() <= 128
        && unique_id.starts_with("AROA")
        && unique_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !id_ok {
        return Err(odd(
            "the role id is not AROA followed by uppercase letters and digits",
        ));
    }
    if session_name != session.session_name {
        return Err(odd("the session names differ"));
    }
    Ok(unique_id)
}

/// Glob match of a role name: `*` any run (also empty), `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_sessions() {
        let s = parse(
            "arn:aws:sts::111122223333:assumed-role/payments-api/8f03e41243824aea923aca126495f665",
        )
        .unwrap();
        assert_eq!(s.partition, "aws");
        assert_eq!(s.account, "111122223333");
        assert_eq!(s.role_name, "payments-api");
        assert_eq!(s.session_name, "8f03e41243824aea923aca126495f665");
        assert_eq!(s.role_arn(), "arn:aws:iam::111122223333:role/payments-api");
        let s = parse("arn:aws-cn:sts::111122223333:assumed-role/R+=,.@_-/s@x").unwrap();
        assert_eq!(s.role_arn(), "arn:aws-cn:iam::111122223333:role/R+=,.@_-");
    }

    #[test]
    fn refuses_other_principals() {
        for (arn, needle) in [
            ("arn:aws:iam::111122223333:user/alice", "an IAM user"),
            ("arn:aws:sts::111122223333:user/moto", "an IAM user"),
            ("arn:aws:iam::111122223333:root", "root user"),
            (
                "arn:aws:sts::111122223333:federated-user/bob",
                "a federated user",
            ),
            (
                "arn:aws:iam::111122223333:role/payments",
                "not a role session",
            ),
        ] {
            let e = parse(arn).unwrap_err();
            assert!(matches!(e, AuthFailure::Untrusted(_)), "{arn}: {e:?}");
            assert!(e.reason().contains(needle), "{arn}: {e:?}");
        }
    }

    #[test]
    fn refuses_unreadable_arns() {
        for arn in [
            "",
            "arn:aws:sts::111122223333",
            "urn:aws:sts::111122223333:assumed-role/r/s",
            "arn:gcp:sts::111122223333:assumed-role/r/s",
            "arn:aws:sts:us-east-1:111122223333:assumed-role/r/s",
            "arn:aws:sts::11112222333:assumed-role/r/s",
            "arn:aws:sts::111122223333:assumed-role/r",
            "arn:aws:sts::111122223333:assumed-role/path/r/s",
            "arn:aws:sts::111122223333:assumed-role//s1",
            "arn:aws:sts::111122223333:assumed-role/r/s",
            "arn:aws:sts::111122223333:assumed-role/r\"x/s1",
            "arn:aws:sts::111122223333:assumed-role/r/s1:x",
        ] {
            let e = parse(arn).unwrap_err();
            assert!(matches!(e, AuthFailure::Unavailable(_)), "{arn}: {e:?}");
        }
    }

    #[test]
    fn unique_ids() {
        let s = parse("arn:aws:sts::111122223333:assumed-role/r/task-1").unwrap();
        assert_eq!(
            role_unique_id("AROAEXAMPLE123456789:task-1", &s).unwrap(),
            "AROAEXAMPLE123456789"
        );
        for bad in [
            "AROAEXAMPLE123456789",
            "AIDAEXAMPLE123456789:task-1",
            "AROA:task-1",
            "AROAexample:task-1",
            "AROAEXAMPLE123456789:task-2",
        ] {
            assert!(
                matches!(role_unique_id(bad, &s), Err(AuthFailure::Unavailable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn globs() {
        for (p, n, m) in [
            ("payments-*", "payments-api", true),
            ("payments-*", "payments-", true),
            ("payments-*", "payment", false),
            ("payments-*", "Payments-api", false),
            ("*-reader", "orders-reader", true),
            ("*-reader", "orders-reader-x", false),
            ("batch-?", "batch-1", true),
            ("batch-?", "batch-10", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_match(p, n), m, "{p} {n}");
        }
    }
}
