//! The only SQL the stand-in understands: `SELECT <int>` and DML. Anything else is refused, so a
//! benchmark or test that sends something else fails loudly instead of measuring a stub.

/// What a statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `SELECT <int>`: one row with one INT64 column.
    SelectInt(i64),
    /// `INSERT`, `UPDATE` or `DELETE`: one row affected.
    Dml,
}

/// Classifies `sql`; `None` if the stand-in cannot answer it.
pub fn classify(sql: &str) -> Option<Statement> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    let (keyword, rest) = sql.split_once(char::is_whitespace).unwrap_or((sql, ""));
    if keyword.eq_ignore_ascii_case("select") {
        return rest.trim().parse().ok().map(Statement::SelectInt);
    }
    ["insert", "update", "delete"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k))
        .then_some(Statement::Dml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify("SELECT 1"), Some(Statement::SelectInt(1)));
        assert_eq!(
            classify("  select   -42 ; "),
            Some(Statement::SelectInt(-42))
        );
        assert_eq!(
            classify("UPDATE t SET a = 1 WHERE true"),
            Some(Statement::Dml)
        );
        assert_eq!(
            classify("insert into t (a) values (1)"),
            Some(Statement::Dml)
        );
        assert_eq!(classify("SELECT a FROM t"), None);
        assert_eq!(classify("SELECT"), None);
        assert_eq!(classify(""), None);
    }
}
