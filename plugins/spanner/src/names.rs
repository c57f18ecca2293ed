//! Spanner resource names, parsed exactly:
//!
//! * instance `projects/<project>/instances/<instance>`,
//! * database `projects/<project>/instances/<instance>/databases/<database>`,
//! * session `projects/<project>/instances/<instance>/databases/<database>/sessions/<session>`.
//!
//! No empty segment, no extra segment, no `.` or `..` segment, no escapes:
//!
//! * `<project>`: 1 to 128 of `a-z 0-9 - . :` (domain-scoped projects are
//!   `example.com:my-project`), starting with a letter or digit, without `..`;
//! * `<instance>`, `<database>`: 1 to 64 of `a-z 0-9 - _`, starting with a
//!   letter or digit;
//! * `<session>`: 1 to 256 of `A-Z a-z 0-9 - _` (Spanner's session ids are
//!   opaque, mixed-case, base64url-like).
//!
//! Spanner's own rules are narrower (e.g. a database id is at most 30
//! characters and starts with a letter); the server refuses what it does not
//! know, so this grammar only has to exclude everything that could be read
//! as another name.

/// The parts of a parsed database or session name (slices of the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names<'a> {
    /// `projects/<p>/instances/<i>`.
    pub instance: &'a str,
    /// `projects/<p>/instances/<i>/databases/<d>`.
    pub database: &'a str,
    /// The whole session name, for a session name.
    pub session: Option<&'a str>,
}

/// Which kind of name a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Database,
    Session,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Session => "session",
        }
    }
}

/// A short, escaped rendering of an untrusted name for error messages.
pub fn shown(s: &str) -> String {
    const MAX: usize = 160;
    let mut out: String = s.chars().take(MAX).collect::<String>();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    format!("{out:?}")
}

fn project_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
        })
        && !s.contains("..")
}

fn id_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

fn session_id_ok(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Parses `projects/<p>/instances/<i>` and returns it unchanged.
pub fn parse_instance(name: &str) -> Result<&str, String> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "instances", i] if project_ok(p) && id_ok(i) => Ok(name),
        _ => Err(format!(
            "{} is not an instance name `projects/<project>/instances/<instance>`",
            shown(name)
        )),
    }
}

/// Parses a database or a session name, exactly.
pub fn parse(name: &str, kind: Kind) -> Result<Names<'_>, String> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = match (kind, parts.as_slice()) {
        (Kind::Database, ["projects", p, "instances", i, "databases", d]) => {
            project_ok(p) && id_ok(i) && id_ok(d)
        }
        (Kind::Session, ["projects", p, "instances", i, "databases", d, "sessions", s]) => {
            project_ok(p) && id_ok(i) && id_ok(d) && session_id_ok(s)
        }
        _ => false,
    };
    if !ok {
        let shape = match kind {
            Kind::Database => "projects/<project>/instances/<instance>/databases/<database>",
            Kind::Session => {
                "projects/<project>/instances/<instance>/databases/<database>/sessions/<session>"
            }
        };
        return Err(format!(
            "{} is not a valid {} name `{shape}`",
            shown(name),
            kind.noun()
        ));
    }
    // The grammar has no multi-byte characters, and the segment counts are
    // fixed, so these prefixes are found by counting slashes.
    let cut = |segments: usize| -> &str {
        let mut seen = 0;
        for (i, b) in name.bytes().enumerate() {
            if b == b'/' {
                seen += 1;
                if seen == segments {
                    return &name[..i];
                }
            }
        }
        name
    };
    Ok(Names {
        instance: cut(4),
        database: cut(6),
        session: (kind == Kind::Session).then_some(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_and_session() {
        let n = parse("projects/p-1/instances/i/databases/d_1", Kind::Database).unwrap();
        assert_eq!(n.instance, "projects/p-1/instances/i");
        assert_eq!(n.database, "projects/p-1/instances/i/databases/d_1");
        assert_eq!(n.session, None);
        let s = "projects/example.com:p/instances/i/databases/d/sessions/AbC-_9";
        let n = parse(s, Kind::Session).unwrap();
        assert_eq!(n.instance, "projects/example.com:p/instances/i");
        assert_eq!(n.database, "projects/example.com:p/instances/i/databases/d");
        assert_eq!(n.session, Some(s));
        assert_eq!(
            parse_instance("projects/p/instances/i"),
            Ok("projects/p/instances/i")
        );
    }

    #[test]
    fn rejects_everything_else() {
        for (name, kind) in [
            ("", Kind::Database),
            ("projects/p/instances/i", Kind::Database),
            ("projects/p/instances/i/databases/", Kind::Database),
            ("projects/p/instances/i/databases/d/", Kind::Database),
            ("/projects/p/instances/i/databases/d", Kind::Database),
            (
                "projects/p/instances/i/databases/d/sessions/s",
                Kind::Database,
            ),
            ("projects/p/instances/i/databases/d", Kind::Session),
            (
                "projects/p/instances/i/databases/d/sessions/",
                Kind::Session,
            ),
            (
                "projects/p/instances/i/databases/d/sessions/s/x",
                Kind::Session,
            ),
            (
                "projects/p/instances/i/databases/d/sessions/a.b",
                Kind::Session,
            ),
            (
                "projects/p/instances/i/databases/../sessions/s",
                Kind::Session,
            ),
            ("projects/../instances/i/databases/d", Kind::Database),
            ("projects/a..b/instances/i/databases/d", Kind::Database),
            ("projects/./instances/i/databases/d", Kind::Database),
            ("projects/P/instances/i/databases/d", Kind::Database),
            ("projects/p/instances/I/databases/d", Kind::Database),
            ("projects/p/instances/i/databases/D", Kind::Database),
            ("projects/p/instances/i/databases/-d", Kind::Database),
            ("projects/p/instances/i/databases/d%2f", Kind::Database),
            ("projects/p/instances/i/databases/d ", Kind::Database),
            ("projects/p/instances/i/databases/dé", Kind::Database),
            ("projects/p/Instances/i/databases/d", Kind::Database),
            ("projects/p/instances/i/databases/d\0", Kind::Database),
            ("projects//instances/i/databases/d", Kind::Database),
        ] {
            assert!(parse(name, kind).is_err(), "{name:?} as {kind:?}");
        }
        let long = format!("projects/p/instances/i/databases/{}", "d".repeat(65));
        assert!(parse(&long, Kind::Database).is_err());
        for bad in [
            "projects/p",
            "projects/p/instances/i/databases/d",
            "projects/p/instances/",
        ] {
            assert!(parse_instance(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shown_truncates_and_escapes() {
        assert_eq!(shown("a\"b\n"), r#""a\"b\n""#);
        let s = shown(&"x".repeat(500));
        assert!(s.len() < 200 && s.contains('…'));
    }
}
