//! The plugin's rejection type, mirroring the WIT `auth-error` variant so the
//! pure logic does not depend on the generated bindings.

use std::fmt::Write as _;

/// Why a credential was refused. Every variant carries a human reason; no
/// reason ever contains the credential, a signature or a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential could not be parsed.
    Malformed(String),
    /// Well-formed but not acceptable (host, parameters, headers, audience,
    /// signature rejected by STS, ...).
    Invalid(String),
    /// Signed too long ago, or in the future.
    Expired(String),
    /// Names an STS host, account or role that is not trusted.
    Untrusted(String),
    /// STS could not be used (unreachable, refused by the host, odd answer);
    /// fail closed.
    Unavailable(String),
}

impl AuthFailure {
    /// The reason text, whatever the variant.
    #[cfg(test)]
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

/// Shorthand constructors.
pub fn malformed(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Malformed(reason.into())
}

/// See [`malformed`].
pub fn invalid(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Invalid(reason.into())
}

/// See [`malformed`].
pub fn unavailable(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Unavailable(reason.into())
}

/// Quotes a value that may come from an unverified credential or from STS
/// for use inside an error message: backticks, escaped control and quote
/// characters, cut at 96 characters. Never use it on secrets.
pub fn quote(s: &str) -> String {
    const MAX: usize = 96;
    let mut out = String::with_capacity(s.len().min(MAX) + 5);
    out.push('`');
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
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
    }
}
