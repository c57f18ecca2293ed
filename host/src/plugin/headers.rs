//! Which request headers a connector sees: only the ones it declares in its
//! metadata (`plugin-metadata.headers`), so a third-party connector never
//! receives cookies or other services' tokens it did not ask for. Declaring
//! `*` alone passes every header.

/// Most header names a connector may declare.
pub const MAX_DECLARED_HEADERS: usize = 64;

/// The headers a connector's calls are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFilter {
    /// Every request header (the connector declared `*`).
    All,
    /// Only these names (lowercase, no duplicates); empty passes none.
    Only(Vec<String>),
}

impl HeaderFilter {
    /// Checks what a connector declared.
    ///
    /// # Errors
    /// A reason for the load error when a name is not a lowercase header
    /// name, repeats, `*` is mixed with names, or there are too many.
    pub fn from_declared(declared: Vec<String>) -> Result<Self, String> {
        if declared.len() > MAX_DECLARED_HEADERS {
            return Err(format!(
                "declares {} request headers (at most {MAX_DECLARED_HEADERS})",
                declared.len()
            ));
        }
        if declared.iter().any(|name| name == "*") {
            return if declared.len() == 1 {
                Ok(Self::All)
            } else {
                Err("declares `*` together with header names; `*` must stand alone".into())
            };
        }
        let mut names: Vec<String> = Vec::with_capacity(declared.len());
        for name in declared {
            if name.is_empty() || name.len() > 128 || !name.bytes().all(is_lowercase_token_byte) {
                return Err(format!(
                    "declares the request header {:?}, which is not a lowercase header name",
                    super::state::truncate(&name, 64)
                ));
            }
            if names.contains(&name) {
                return Err(format!("declares the request header `{name}` twice"));
            }
            names.push(name);
        }
        Ok(Self::Only(names))
    }

    /// The headers of `headers` this connector may see, in their order.
    pub fn apply(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        match self {
            Self::All => headers.to_vec(),
            Self::Only(names) => headers
                .iter()
                .filter(|(name, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
                .cloned()
                .collect(),
        }
    }
}

/// RFC 9110 token characters, upper case excluded (HTTP/2 names are lowercase).
fn is_lowercase_token_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_string(), format!("value of {n}")))
            .collect()
    }

    fn declared(names: &[&str]) -> Result<HeaderFilter, String> {
        HeaderFilter::from_declared(names.iter().map(|n| (*n).to_string()).collect())
    }

    #[test]
    fn passes_only_the_declared_headers_in_order() {
        let filter = declared(&["x-goog-request-params", "google-cloud-resource-prefix"]).unwrap();
        let seen = filter.apply(&pairs(&[
            "cookie",
            "google-cloud-resource-prefix",
            "x-other-token",
            "x-goog-request-params",
        ]));
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["google-cloud-resource-prefix", "x-goog-request-params"]
        );
        assert_eq!(seen[1].1, "value of x-goog-request-params");
    }

    #[test]
    fn nothing_declared_passes_nothing_and_star_passes_everything() {
        let all = pairs(&["cookie", "x-a"]);
        assert!(declared(&[]).unwrap().apply(&all).is_empty());
        assert_eq!(declared(&["*"]).unwrap().apply(&all), all);
    }

    #[test]
    fn bad_declarations_are_refused_with_the_reason() {
        for (names, reason) in [
            (vec!["X-Upper"], "not a lowercase header name"),
            (vec![""], "not a lowercase header name"),
            (vec!["a b"], "not a lowercase header name"),
            (vec!["x-a", "x-a"], "twice"),
            (vec!["*", "x-a"], "must stand alone"),
        ] {
            let err = declared(&names).unwrap_err();
            assert!(err.contains(reason), "{names:?}: {err}");
        }
        let many: Vec<String> = (0..=MAX_DECLARED_HEADERS)
            .map(|i| format!("x-{i}"))
            .collect();
        assert!(
            HeaderFilter::from_declared(many)
                .unwrap_err()
                .contains("at most")
        );
    }
}
