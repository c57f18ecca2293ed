//! Request-target checks and the path hierarchy.
//!
//! The proxy authorizes the path it forwards, byte for byte, so the checks
//! here refuse everything an upstream might read as a *different* path:
//! dot segments, empty segments, encoded separators and dots, backslashes,
//! NUL and control characters. Nothing is decoded or rewritten; other
//! percent-escapes are kept exactly as they came.

/// A request target split into its path and raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path, starting with `/`, without the query.
    pub path: &'a str,
    /// The raw query after the first `?` (`""` when there is none).
    pub query: &'a str,
}

/// Splits `target` at the first `?` and validates both parts.
///
/// The error is a human-readable reason suitable for `malformed(..)`.
pub fn parse_target(target: &str, max_path_bytes: usize) -> Result<Target<'_>, String> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    check_path(path, max_path_bytes)?;
    check_query(query)?;
    Ok(Target { path, query })
}

/// Validates a path (no query).
pub fn check_path(path: &str, max_path_bytes: usize) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".to_string());
    }
    if path.len() > max_path_bytes {
        return Err(format!(
            "path is {} bytes, over the {max_path_bytes}-byte limit",
            path.len()
        ));
    }
    if !path.starts_with('/') {
        return Err(format!("path {} does not start with `/`", show(path)));
    }
    check_chars(path, "path")?;
    check_escapes(path)?;
    if path == "/" {
        return Ok(());
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        // A single trailing slash (`/orders/`) is a distinct, legitimate path;
        // an empty segment anywhere else (`//`) is not.
        if segment.is_empty() && i != last {
            return Err(format!("path {} has an empty segment (`//`)", show(path)));
        }
        // `..;x` is how some servlet containers spell `..`.
        let bare = segment.split(';').next().unwrap_or(segment);
        if bare == "." || bare == ".." {
            return Err(format!(
                "path {} has a `{bare}` segment; dot segments are not allowed",
                show(path)
            ));
        }
    }
    Ok(())
}

/// Validates the raw query: same character rules as the path; escapes are
/// not interpreted.
fn check_query(query: &str) -> Result<(), String> {
    check_chars(query, "query")
}

/// Refuses bytes that are never valid in a request target or that some
/// upstreams read as separators.
fn check_chars(s: &str, what: &str) -> Result<(), String> {
    for b in s.bytes() {
        let reason = match b {
            0x00..=0x1f | 0x7f => "a control character",
            b' ' => "a space",
            b'\\' => "a backslash",
            b'#' => "a `#` (fragments are never sent to a server)",
            0x80..=0xff => "a non-ASCII character (it must be percent-encoded)",
            _ => continue,
        };
        return Err(format!("{what} contains {reason}"));
    }
    Ok(())
}

/// Refuses malformed escapes and escapes of `/`, `\`, `.` and NUL.
fn check_escapes(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let escape = bytes.get(i..i + 3).unwrap_or(&bytes[i..]);
        let decoded = match (escape.get(1).and_then(hex), escape.get(2).and_then(hex)) {
            (Some(hi), Some(lo)) => hi << 4 | lo,
            _ => {
                return Err(format!(
                    "path {} has a malformed percent-escape `{}`",
                    show(path),
                    String::from_utf8_lossy(escape)
                ));
            }
        };
        let name = match decoded {
            b'/' => "an encoded `/`",
            b'\\' => "an encoded `\\`",
            b'.' => "an encoded `.`",
            0 => "an encoded NUL",
            _ => {
                i += 3;
                continue;
            }
        };
        return Err(format!(
            "path {} contains {name} (`{}`)",
            show(path),
            String::from_utf8_lossy(escape)
        ));
    }
    Ok(())
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Every proper prefix of a valid path, nearest first:
/// `/orders/42/items` → `/orders/42`, `/orders`, `/`.
/// A trailing slash counts as a level: `/orders/` → `/orders`, `/`.
pub fn ancestors(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut current = path;
    while current.len() > 1 {
        let parent = match current.strip_suffix('/') {
            Some(stripped) => stripped,
            None => match current.rfind('/') {
                Some(0) => "/",
                Some(i) => &current[..i],
                None => break,
            },
        };
        out.push(parent);
        current = parent;
    }
    out
}

/// Quotes a (possibly hostile) path for an error message: escaped, and cut
/// at 128 characters.
fn show(s: &str) -> String {
    intentgate_guest::quote_at(s, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_query() {
        let t = parse_target("/orders/42?a=b&c=%2F", 2048).unwrap();
        assert_eq!(t.path, "/orders/42");
        assert_eq!(t.query, "a=b&c=%2F");
        let t = parse_target("/orders", 2048).unwrap();
        assert_eq!(t.query, "");
        let t = parse_target("/x?", 2048).unwrap();
        assert_eq!((t.path, t.query), ("/x", ""));
    }

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "/",
            "/orders",
            "/orders/",
            "/orders/42/items",
            "/a%20b",
            "/caf%C3%A9",
            "/%25",
            "/v1/x;y=1",
            "/...",
            "/.well-known/x",
            "/a.b/c..d",
            "/~user/@me:1",
        ] {
            assert!(check_path(p, 2048).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_ambiguous_paths() {
        for (p, needle) in [
            ("", "path is empty"),
            ("orders", "does not start with `/`"),
            ("*", "does not start with `/`"),
            ("http://x/y", "does not start with `/`"),
            ("//", "empty segment"),
            ("//orders", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a/./b", "`.` segment"),
            ("/a/../b", "`..` segment"),
            ("/..", "`..` segment"),
            ("/.", "`.` segment"),
            ("/a/..;x/b", "`..` segment"),
            ("/a/.;/b", "`.` segment"),
            ("/a%2fb", "encoded `/`"),
            ("/a%2Fb", "encoded `/`"),
            ("/a%5cb", "encoded `\\`"),
            ("/a%5Cb", "encoded `\\`"),
            ("/%2e%2e/x", "encoded `.`"),
            ("/a%2Eb", "encoded `.`"),
            ("/a%00", "encoded NUL"),
            ("/a%", "malformed percent-escape `%`"),
            ("/a%4", "malformed percent-escape `%4`"),
            ("/a%zz", "malformed percent-escape"),
            ("/a%u002e", "malformed percent-escape"),
            ("/a\\b", "backslash"),
            ("/a\nb", "control character"),
            ("/a\rb", "control character"),
            ("/a\u{7f}", "control character"),
            ("/a\0", "control character"),
            ("/a b", "a space"),
            ("/a#b", "`#`"),
            ("/café", "non-ASCII"),
        ] {
            let err = check_path(p, 2048).unwrap_err();
            assert!(err.contains(needle), "{p:?}: {err}");
        }
    }

    #[test]
    fn size_limit_counts_path_only() {
        let long = format!("/{}", "a".repeat(2047));
        assert!(check_path(&long, 2048).is_ok());
        let longer = format!("/{}", "a".repeat(2048));
        assert_eq!(
            check_path(&longer, 2048).unwrap_err(),
            "path is 2049 bytes, over the 2048-byte limit"
        );
        assert!(parse_target(&format!("{long}?{}", "q".repeat(5000)), 2048).is_ok());
    }

    #[test]
    fn query_characters_are_checked() {
        assert!(parse_target("/a?x=\n", 2048).is_err());
        assert!(parse_target("/a?x=1#frag", 2048).is_err());
        // Escapes in the query are not interpreted.
        assert!(parse_target("/a?x=%2e%2e%2f", 2048).is_ok());
    }

    #[test]
    fn error_messages_escape_and_truncate() {
        let err = check_path(&format!("/{}/../", "a".repeat(300)), 4096).unwrap_err();
        assert!(err.len() < 250, "{err}");
        assert!(err.contains("..."));
    }

    #[test]
    fn ancestors_nearest_first() {
        assert_eq!(
            ancestors("/orders/42/items"),
            vec!["/orders/42", "/orders", "/"]
        );
        assert_eq!(ancestors("/orders"), vec!["/"]);
        assert_eq!(ancestors("/orders/"), vec!["/orders", "/"]);
        assert_eq!(ancestors("/a/b/"), vec!["/a/b", "/a", "/"]);
        assert!(ancestors("/").is_empty());
    }
}
