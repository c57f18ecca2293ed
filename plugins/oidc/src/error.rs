//! The plugin's rejection type, mirroring the WIT `auth-error` variant so the
//! pure logic does not depend on the generated bindings.

pub use intentgate_guest::{AuthFailure, quote};

/// Quotes each value and joins them with `, `.
pub fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_list(["a", "b"]), "`a`, `b`");
    }
}
