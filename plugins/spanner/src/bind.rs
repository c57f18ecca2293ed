//! Binding a session to the database role the policy names, learning the
//! role each session is bound to, and looking it up.
//!
//! * `bind` returns bytes to append to a CreateSession / BatchCreateSessions
//!   request: field 2 (`session` / `session_template`, a `Session`) holding
//!   field 5 (`creator_role`). Protobuf merges repeated occurrences of an
//!   embedded message field and keeps the last value of a scalar field, so
//!   the appended bytes force `creator_role` whatever the client sent.
//! * `observe` reads a CreateSession, BatchCreateSessions or GetSession
//!   response into grants: (session name, `creator_role`).
//! * `lookup` builds the GetSession call a replica that has not observed a
//!   session sends upstream (with its own credential) to learn its role.
//!
//! A session name is a bearer capability: every session-scoped RPC presents
//! it, and the host allows the call only when the session's bound role is
//! among the roles the determining permits name. The bound role is
//! Spanner's own `creator_role`, so any replica can learn it again from
//! Spanner; no store is shared between replicas.

use crate::classify::{self, Reading, Refusal, Rpc, SERVICE_PREFIX, once, utf8};
use crate::config::SpannerConfig;
use crate::names::{self, Kind};
use crate::wire::{self, Value};

/// Longest database role name Spanner accepts.
const MAX_ROLE_BYTES: usize = 128;
/// Most grants one response may teach. BatchCreateSessions creates at most
/// `session_count` sessions, which Spanner caps at 100 in practice.
pub const MAX_GRANTS: usize = 1000;

fn malformed(m: impl Into<String>) -> Refusal {
    Refusal::Malformed(m.into())
}

/// Spanner's database role grammar: a letter, then letters, digits or `_`,
/// at most 128 characters.
pub fn role_ok(role: &str) -> bool {
    role.len() <= MAX_ROLE_BYTES
        && role.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The fields of a `Session` message this module reads.
struct SessionMsg<'a> {
    name: &'a str,
    creator_role: &'a str,
}

fn parse_session<'a>(bytes: &'a [u8], what: &str) -> Result<SessionMsg<'a>, Refusal> {
    let mut name = None;
    let mut role = None;
    for field in wire::fields(bytes) {
        let field =
            field.map_err(|e| malformed(format!("{what} is not valid protobuf: {}", e.0)))?;
        match field.number {
            1 => once(&mut name, field, "name")?,
            5 => once(&mut role, field, "creator_role")?,
            _ => {}
        }
    }
    Ok(SessionMsg {
        name: utf8(name.unwrap_or_default(), "name")?,
        creator_role: utf8(role.unwrap_or_default(), "creator_role")?,
    })
}

/// The `creator_role` a CreateSession (`session`) or BatchCreateSessions
/// (`session_template`) request asks for, `""` when it asks for none. With
/// several occurrences (merged by protobuf), the last role set wins, as it
/// does for Spanner.
pub fn requested_role<'a>(rpc: Rpc, parts: &[&'a [u8]]) -> Result<&'a str, Refusal> {
    let what = match rpc {
        Rpc::BatchCreateSessions => "session_template",
        _ => "session",
    };
    let mut role = "";
    for part in parts {
        let asked = parse_session(part, what)?.creator_role;
        if !asked.is_empty() {
            role = asked;
        }
    }
    Ok(role)
}

/// The bytes that force `creator_role = role` on a session-creating request.
pub fn creator_role_bytes(role: &str) -> Vec<u8> {
    let mut session = Vec::with_capacity(role.len() + 3);
    wire::put_bytes(&mut session, 5, role.as_bytes());
    let mut out = Vec::with_capacity(session.len() + 3);
    wire::put_bytes(&mut out, 2, &session);
    out
}

/// `bind`: checks the request and the role, returns the bytes to append.
pub fn bind(
    config: &SpannerConfig,
    protocol: &str,
    method: &str,
    path: &str,
    body: &[u8],
    role: &str,
) -> Result<Vec<u8>, Refusal> {
    let req = classify::read_request(config, protocol, method, path, body, Reading::All)?;
    if !matches!(req.rpc, Rpc::CreateSession | Rpc::BatchCreateSessions) {
        return Err(Refusal::Unsupported(format!(
            "{} is not bound to a database role (only CreateSession and BatchCreateSessions are)",
            req.rpc.name()
        )));
    }
    if !role_ok(role) {
        return Err(malformed(format!(
            "the policy's database_role {} is not a valid Spanner database role name",
            names::shown(role)
        )));
    }
    let requested = requested_role(req.rpc, &req.session_parts)?;
    if !requested.is_empty() && requested != role {
        return Err(malformed(format!(
            "the client asked for database role {} but its policy maps it to {}",
            names::shown(requested),
            names::shown(role)
        )));
    }
    Ok(creator_role_bytes(role))
}

/// One grant: a capability (session name) and the role it is bound to.
pub type Grant = (String, String);

/// `observe`: the grants a response teaches, each (session name,
/// `creator_role`):
///
/// * CreateSession: the new session, with `creator_role` as upstream echoed
///   it (`""` when it did not: the host then uses the role it bound);
/// * BatchCreateSessions: one grant per new session, all with the same role
///   (at most [`MAX_GRANTS`]);
/// * GetSession (the [`lookup`] call): the requested session, which the
///   response must name exactly; an empty `creator_role` stays `""`, which
///   the host reads on a lookup as "no role known" and denies.
///
/// Every name must be a session of the request's database, every non-empty
/// role a valid role name.
pub fn observe(
    config: &SpannerConfig,
    protocol: &str,
    method: &str,
    path: &str,
    body: &[u8],
    response: &[u8],
) -> Result<Vec<Grant>, Refusal> {
    let req = classify::read_request(config, protocol, method, path, body, Reading::NameOnly)?;
    let database = req.names.database;
    let checked = |s: &SessionMsg<'_>| -> Result<(), Refusal> {
        let n = names::parse(s.name, Kind::Session)
            .map_err(|e| malformed(format!("upstream session name: {e}")))?;
        if n.database != database {
            return Err(malformed(format!(
                "upstream returned session {} outside the requested database {}",
                names::shown(s.name),
                names::shown(database)
            )));
        }
        if !s.creator_role.is_empty() && !role_ok(s.creator_role) {
            return Err(malformed(format!(
                "upstream returned creator_role {}, not a valid role name",
                names::shown(s.creator_role)
            )));
        }
        Ok(())
    };
    let grant = |s: &SessionMsg<'_>| (s.name.to_string(), s.creator_role.to_string());
    match req.rpc {
        Rpc::CreateSession => {
            let session = parse_session(response, "the Session response")?;
            checked(&session)?;
            Ok(vec![grant(&session)])
        }
        Rpc::GetSession => {
            let requested = req.names.session.unwrap_or_default();
            let session = parse_session(response, "the GetSession response")?;
            if session.name != requested {
                return Err(malformed(format!(
                    "upstream answered GetSession {} with session {}",
                    names::shown(requested),
                    names::shown(session.name)
                )));
            }
            checked(&session)?;
            Ok(vec![grant(&session)])
        }
        Rpc::BatchCreateSessions => {
            let mut grants = Vec::new();
            let mut role: Option<&str> = None;
            for field in wire::fields(response) {
                let field = field.map_err(|e| {
                    malformed(format!(
                        "the BatchCreateSessions response is not valid protobuf: {}",
                        e.0
                    ))
                })?;
                if field.number != 1 {
                    continue;
                }
                let Value::Bytes(bytes) = field.value else {
                    return Err(malformed(
                        "BatchCreateSessions response field 1 (`session`) is not a message",
                    ));
                };
                if grants.len() == MAX_GRANTS {
                    return Err(malformed(format!(
                        "the BatchCreateSessions response holds more than {MAX_GRANTS} sessions"
                    )));
                }
                let session = parse_session(bytes, "a BatchCreateSessions session")?;
                checked(&session)?;
                match role {
                    Some(r) if r != session.creator_role => {
                        return Err(malformed(
                            "BatchCreateSessions returned sessions with different creator_role values",
                        ));
                    }
                    _ => role = Some(session.creator_role),
                }
                grants.push(grant(&session));
            }
            Ok(grants)
        }
        other => Err(Refusal::Unsupported(format!(
            "{} responses are not observed (only CreateSession, BatchCreateSessions and GetSession)",
            other.name()
        ))),
    }
}

/// The call [`lookup`] returns, independent of the WIT bindings; its
/// protocol is [`GRPC`](crate::classify::GRPC) and its path equals `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupCall {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `lookup`: the GetSession call that tells which role `capability` (a
/// session name in a configured instance) is bound to. The host sends it
/// with its own upstream credential and shows the response to `observe`.
pub fn lookup(config: &SpannerConfig, capability: &str) -> Result<LookupCall, Refusal> {
    let n = names::parse(capability, Kind::Session)
        .map_err(|e| malformed(format!("capability: {e}")))?;
    if !config.serves(n.instance) {
        return Err(malformed(format!(
            "capability: database {} is not in a configured instance",
            names::shown(n.database)
        )));
    }
    // GetSessionRequest { name = 1 }.
    let mut body = Vec::with_capacity(capability.len() + 3);
    wire::put_bytes(&mut body, 1, capability.as_bytes());
    if body.len() > config.max_message_bytes {
        return Err(malformed(format!(
            "the GetSession request would be {} bytes, over max_message_bytes ({})",
            body.len(),
            config.max_message_bytes
        )));
    }
    Ok(LookupCall {
        method: format!("{SERVICE_PREFIX}{}", Rpc::GetSession.name()),
        headers: vec![
            (
                "google-cloud-resource-prefix".to_string(),
                n.database.to_string(),
            ),
            (
                "x-goog-request-params".to_string(),
                format!("name={capability}"),
            ),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        for ok in ["r", "orders_reader", "public", "R2_d2", &"a".repeat(128)] {
            assert!(role_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "_r",
            "1r",
            "r-1",
            "r.x",
            "r r",
            "rôle",
            &"a".repeat(129),
        ] {
            assert!(!role_ok(bad), "{bad}");
        }
    }

    #[test]
    fn forcing_bytes() {
        assert_eq!(creator_role_bytes("ab"), vec![0x12, 4, 0x2a, 2, b'a', b'b']);
    }

    #[test]
    fn lookup_bytes() {
        let config = SpannerConfig::parse(r#"{"instances":["projects/p/instances/i"]}"#).unwrap();
        let name = "projects/p/instances/i/databases/d/sessions/s";
        let call = lookup(&config, name).unwrap();
        let mut expected = vec![0x0a, name.len() as u8];
        expected.extend_from_slice(name.as_bytes());
        assert_eq!(call.body, expected);
        assert_eq!(call.method, "/google.spanner.v1.Spanner/GetSession");
        // A configured max_message_bytes smaller than the request refuses it
        // here rather than in `observe`.
        let tiny = SpannerConfig::parse(
            r#"{"instances":["projects/p/instances/i"],"max_message_bytes":10}"#,
        )
        .unwrap();
        assert!(
            matches!(lookup(&tiny, name), Err(Refusal::Malformed(m)) if m.contains("over max_message_bytes"))
        );
    }
}
