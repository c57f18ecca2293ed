//! Diagnostics for people: what failed, where (file:line:col), what to do.
//! Cedar reports positions as byte offsets into the text it parsed; this
//! module maps them back to lines and columns and tidies the messages.

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading schema fragments, policies or a policy
/// test file.
///
/// Displays as `path:line:col: message`, followed by `\n  help: ...` when
/// there is advice. Messages are lowercase with no trailing period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    /// The policy, schema or test file; for a plugin's schema fragment its
    /// origin, such as ``plugin `oidc` ``.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column, in characters.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl PolicyDiagnostic {
    /// A diagnostic without a position.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            column: None,
            message: tidy(&message.into()),
            help: None,
        }
    }

    /// Names the file (or fragment origin) the diagnostic is about.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets line and column from a byte offset into `text`.
    pub fn at_offset(mut self, text: &str, offset: usize) -> Self {
        let (line, column) = line_col(text, offset);
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Adds advice; empty advice is ignored.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        let help = tidy(&help.into());
        if !help.is_empty() {
            self.help = Some(match self.help.take() {
                Some(old) => format!("{old}; {help}"),
                None => help,
            });
        }
        self
    }

    /// Converts a Cedar (miette) diagnostic about `text` (the file or
    /// fragment Cedar parsed) into ours. The first label gives the position
    /// and, when it says something, is appended to the message.
    pub(super) fn from_cedar(
        err: &dyn miette::Diagnostic,
        file: Option<PathBuf>,
        text: Option<&str>,
        fallback_offset: Option<usize>,
    ) -> Self {
        let first = err.labels().and_then(|mut labels| labels.next());
        let mut message = err.to_string();
        if let Some(label) = first.as_ref().and_then(|l| l.label()) {
            message = format!("{message}: {label}");
        }
        let mut diag = Self::new(message);
        diag.file = file;
        let offset = first.map(|l| l.offset()).or(fallback_offset);
        if let (Some(text), Some(offset)) = (text, offset) {
            diag = diag.at_offset(text, offset);
        }
        if let Some(help) = err.help() {
            diag = diag.with_help(help.to_string());
        }
        diag
    }
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
                if let Some(column) = self.column {
                    write!(f, "{column}:")?;
                }
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyDiagnostic {}

/// 1-based line and character column of a byte offset. Offsets past the end
/// or inside a character are clamped to the nearest boundary before them.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Lowercases the first letter (unless it starts an acronym) and drops a
/// trailing period, so Cedar's and our messages read alike.
pub(super) fn tidy(message: &str) -> String {
    let trimmed = message.trim().trim_end_matches('.');
    let mut chars = trimmed.chars();
    match (chars.next(), chars.next()) {
        (Some(first), second)
            if first.is_uppercase() && !second.is_some_and(char::is_uppercase) =>
        {
            let mut out: String = first.to_lowercase().collect();
            out.push_str(trimmed.get(first.len_utf8()..).unwrap_or_default());
            out
        }
        _ => trimmed.to_owned(),
    }
}
