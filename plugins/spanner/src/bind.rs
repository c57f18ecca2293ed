//! Binding a session to the database role the policy names, and learning
//! the sessions that upstream created.
//!
//! `bind` returns bytes to append to a CreateSession / BatchCreateSessions
//! request: field 2 (`session` / `session_template`, a `Session`) holding
//! field 5 (`creator_role`). Protobuf merges repeated occurrences of an
//! embedded message field and keeps the last value of a scalar field, so the
//! appended bytes force `creator_role` whatever the client sent.

use crate::classify::{self, Reading, Refusal, Rpc, once, utf8};
use crate::config::SpannerConfig;
use crate::names::{self, Kind};
use crate::wire::{self, Value};

/// Longest database role name Spanner accepts.
const MAX_ROLE_BYTES: usize = 128;

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
/// (`session_template`) request asks for, `""` when it asks for none.
pub fn requested_role(rpc: Rpc, session: Option<&[u8]>) -> Result<&str, Refusal> {
    let what = match rpc {
        Rpc::BatchCreateSessions => "session_template",
        _ => "session",
    };
    match session {
        Some(bytes) => Ok(parse_session(bytes, what)?.creator_role),
        None => Ok(""),
    }
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
    let requested = requested_role(req.rpc, req.field2)?;
    if !requested.is_empty() && requested != role {
        return Err(malformed(format!(
            "the client asked for database role {} but its policy maps it to {}",
            names::shown(requested),
            names::shown(role)
        )));
    }
    Ok(creator_role_bytes(role))
}

/// `observe`: the facts a CreateSession or BatchCreateSessions response
/// teaches: one `session` per created session (each checked to lie in the
/// request's database), then `creator_role` as upstream echoed it (`""` when
/// it did not).
pub fn observe(
    config: &SpannerConfig,
    protocol: &str,
    method: &str,
    path: &str,
    body: &[u8],
    response: &[u8],
) -> Result<Vec<(String, String)>, Refusal> {
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
    match req.rpc {
        Rpc::CreateSession => {
            let session = parse_session(response, "the Session response")?;
            checked(&session)?;
            Ok(vec![
                ("session".to_string(), session.name.to_string()),
                ("creator_role".to_string(), session.creator_role.to_string()),
            ])
        }
        Rpc::BatchCreateSessions => {
            let mut facts = Vec::new();
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
                facts.push(("session".to_string(), session.name.to_string()));
            }
            facts.push((
                "creator_role".to_string(),
                role.unwrap_or_default().to_string(),
            ));
            Ok(facts)
        }
        other => Err(Refusal::Unsupported(format!(
            "{} responses are not observed (only CreateSession and BatchCreateSessions)",
            other.name()
        ))),
    }
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
}
