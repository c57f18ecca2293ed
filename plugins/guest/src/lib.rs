//! Helpers every intentgate guest plugin needs and that do not depend on the
//! generated bindings: the identity rejection type and quoting untrusted
//! values for error messages.

use std::fmt::Write as _;

mod call_arena;
pub use call_arena::{ARENA_BYTES, CallArena};

/// Why a credential was refused, mirroring the WIT `auth-error` variant so
/// a plugin's pure logic does not depend on its bindings. Every variant
/// carries a human reason; a reason never contains a credential or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential could not be parsed.
    Malformed(String),
    /// Well-formed but not valid (signature, audience, algorithm, key, ...).
    Invalid(String),
    /// Expired or not valid yet.
    Expired(String),
    /// Names an issuer, account or role that is not trusted.
    Untrusted(String),
    /// A dependency could not be used; fail closed.
    Unavailable(String),
}

impl AuthFailure {
    /// The reason text, whatever the variant.
    pub fn reason(&self) -> &str {
        match self {
            Self::Malformed(s)
            | Self::Invalid(s)
            | Self::Expired(s)
            | Self::Untrusted(s)
            | Self::Unavailable(s) => s,
        }
    }
}

/// Shorthand for [`AuthFailure::Malformed`].
pub fn malformed(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Malformed(reason.into())
}

/// Shorthand for [`AuthFailure::Invalid`].
pub fn invalid(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Invalid(reason.into())
}

/// Shorthand for [`AuthFailure::Unavailable`].
pub fn unavailable(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Unavailable(reason.into())
}

/// Quotes a value that may come from an unverified credential or a remote
/// document for an error message: backticks, escaped control and quote
/// characters, cut at 96 characters. Never use it on secrets.
pub fn quote(s: &str) -> String {
    quote_at(s, 96)
}

/// [`quote`] with another length cut.
pub fn quote_at(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 5);
    out.push('`');
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        let _ = write!(out, "{}", c.escape_debug());
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a"), "`a`");
        assert_eq!(quote("a\nb\"c"), "`a\\nb\\\"c`");
        assert_eq!(quote(&"x".repeat(200)), format!("`{}...`", "x".repeat(96)));
        assert_eq!(quote_at("abcd", 2), "`ab...`");
    }

    #[test]
    fn reasons_are_reachable_whatever_the_variant() {
        assert_eq!(malformed("m").reason(), "m");
        assert_eq!(AuthFailure::Expired("e".into()).reason(), "e");
    }
}
