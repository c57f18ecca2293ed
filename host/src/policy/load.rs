//! Loading: reads `.cedar` files, names every policy by its `@id`, validates
//! the set in strict mode against the merged schema and indexes it. Every
//! error is collected, with its file and line, so one run of
//! `intentgate check` shows the operator everything to fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::diagnostic::line_col;
use super::index::{ScopeIndex, SliceCache, action_table};
use super::request::{EntityCache, GateCache};
use super::{
    LoadedPolicies, PolicyDiagnostic, PolicyOrigin, PolicySources, PolicyText,
    SchemaFragmentSource, schema,
};

/// Reads the policy files and builds a validated, indexed policy set.
///
/// Returns every problem found: schema syntax and merge errors, policy
/// syntax errors, missing or duplicate `@id`s, templates, and strict
/// validation errors, each with its file and line.
pub fn load(sources: &PolicySources) -> Result<LoadedPolicies, Vec<PolicyDiagnostic>> {
    let mut texts = Vec::with_capacity(sources.policy_files.len());
    let mut errors = Vec::new();
    for path in &sources.policy_files {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push(PolicyText {
                path: path.clone(),
                text,
            }),
            Err(e) => errors.push(
                PolicyDiagnostic::new(format!("cannot read policy file: {e}"))
                    .in_file(path)
                    .with_help("check the path in the configuration and the file's permissions"),
            ),
        }
    }
    match load_texts(&sources.fragments, &sources.principal_types, &texts) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// [`load`] for policy files already in memory.
pub fn load_texts(
    fragments: &[SchemaFragmentSource],
    principal_types: &[String],
    policies: &[PolicyText],
) -> Result<LoadedPolicies, Vec<PolicyDiagnostic>> {
    // Parse the policies even when the schema is broken, so one run reports
    // both.
    let schema = schema::build(fragments, principal_types);
    let parsed = parse_files(policies);
    let (built, mut errors) = match schema {
        Ok(built) => (Some(built), parsed.errors),
        Err(mut errors) => {
            errors.extend(parsed.errors);
            (None, errors)
        }
    };
    let Some(built) = built else {
        return Err(errors);
    };
    let mut warnings = built.warnings;

    // Validate whatever parsed, even if some files did not, for the same
    // reason.
    let validation =
        Validator::new(built.schema.clone()).validate(&parsed.set, ValidationMode::Strict);
    let locate = |id: &PolicyId, err: &dyn miette::Diagnostic| -> PolicyDiagnostic {
        let located = parsed.located.get(AsRef::<str>::as_ref(id));
        match located.and_then(|l| policies.get(l.file).map(|f| (f, l.offset))) {
            Some((file, offset)) => PolicyDiagnostic::from_cedar(
                err,
                Some(file.path.clone()),
                Some(&file.text),
                Some(offset),
            ),
            None => PolicyDiagnostic::from_cedar(err, None, None, None),
        }
    };
    for e in validation.validation_errors() {
        errors.push(locate(e.policy_id(), e));
    }
    for w in validation.validation_warnings() {
        warnings.push(locate(w.policy_id(), w));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    Ok(assemble(
        built.schema,
        parsed.set,
        parsed.located,
        policies,
        warnings,
    ))
}

/// Every `.cedar` file under `dir` (recursively), sorted by path, so load
/// order and diagnostics are stable.
pub fn policy_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "cedar") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Where a parsed policy came from: the index of its file and the byte
/// offset of its first character.
struct Located {
    file: usize,
    offset: usize,
    line: usize,
    column: usize,
}

struct ParsedFiles {
    /// All policies that parsed and have a unique `@id`, renamed to it.
    set: PolicySet,
    located: HashMap<String, Located>,
    errors: Vec<PolicyDiagnostic>,
}

fn parse_files(files: &[PolicyText]) -> ParsedFiles {
    let mut out = ParsedFiles {
        set: PolicySet::new(),
        located: HashMap::new(),
        errors: Vec::new(),
    };
    for (file_index, file) in files.iter().enumerate() {
        let path = file.path.as_path();
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(parsed) => parsed,
            Err(errs) => {
                // Offsets in Cedar's parse errors are into the whole file.
                for e in errs.iter() {
                    out.errors.push(PolicyDiagnostic::from_cedar(
                        e,
                        Some(file.path.clone()),
                        Some(&file.text),
                        None,
                    ));
                }
                continue;
            }
        };
        // Cedar names the statements of a file `policy0`, `policy1`, ... in
        // the order they appear (templates included), and keeps each
        // policy's exact source text. Walking them in that order and finding
        // each text after the previous one gives every policy's position.
        let count = parsed.policies().count() + parsed.templates().count();
        let mut cursor = Cursor::default();
        for n in 0..count {
            let generated = PolicyId::new(format!("policy{n}"));
            if let Some(template) = parsed.template(&generated) {
                let offset = cursor.advance(&file.text, Some(template.to_cedar()));
                out.errors.push(
                    PolicyDiagnostic::new(format!(
                        "templates are not supported yet{}",
                        template.annotation("id").map(|id| format!(" (policy `{id}`)")).unwrap_or_default()
                    ))
                    .in_file(path)
                    .at_offset(&file.text, offset)
                    .with_help("write a static policy: replace `?principal` and `?resource` with entity references"),
                );
                continue;
            }
            let Some(policy) = parsed.policy(&generated) else {
                continue;
            };
            let offset = cursor.advance(&file.text, policy.to_cedar());
            let (line, column) = cursor.line_col(&file.text, offset);
            let at = |message: String| {
                PolicyDiagnostic::new(message)
                    .in_file(path)
                    .at_offset(&file.text, offset)
            };
            let id = match policy.annotation("id") {
                None => {
                    out.errors.push(at("policy has no `@id` annotation".to_owned()).with_help(
                        "add `@id(\"a-stable-name\")` before the policy; audit records and explanations name policies by it",
                    ));
                    continue;
                }
                Some(id) if id.trim().is_empty() => {
                    out.errors.push(
                        at("policy has an empty `@id`".to_owned())
                            .with_help("give the policy a stable, unique name"),
                    );
                    continue;
                }
                Some(id) => id.to_owned(),
            };
            if let Some(first) = out.located.get(&id) {
                let first_path = files
                    .get(first.file)
                    .map_or_else(|| Path::new("?"), |f| f.path.as_path());
                out.errors.push(at(format!("duplicate policy id `{id}`")).with_help(format!(
                    "`{id}` is already used at {}:{}:{}; policy ids must be unique across all policy files",
                    first_path.display(),
                    first.line,
                    first.column
                )));
                continue;
            }
            if let Err(e) = out.set.add(policy.new_id(PolicyId::new(&id))) {
                out.errors
                    .push(at(format!("cannot add policy `{id}`: {e}")));
                continue;
            }
            out.located.insert(
                id,
                Located {
                    file: file_index,
                    offset,
                    line,
                    column,
                },
            );
        }
    }
    out
}

/// Walks a file forward: where the last policy ended, and the line count up
/// to there, so positions cost one pass over the file, not one per policy.
#[derive(Default)]
struct Cursor {
    offset: usize,
    line_offset: usize,
    line: usize,
}

impl Cursor {
    /// Finds the next policy's text at or after the cursor; returns its
    /// start offset (the cursor's position if the text is unknown).
    fn advance(&mut self, text: &str, policy_text: Option<String>) -> usize {
        let start = self.offset;
        let Some(policy_text) = policy_text else {
            return start;
        };
        match text
            .get(start..)
            .and_then(|rest| rest.find(policy_text.as_str()))
        {
            Some(found) => {
                self.offset = start + found + policy_text.len();
                start + found
            }
            None => start,
        }
    }

    /// Line and column of `offset`, which must not be before the last offset
    /// asked for.
    fn line_col(&mut self, text: &str, offset: usize) -> (usize, usize) {
        if self.line == 0 {
            self.line = 1;
        }
        if let Some(between) = text.get(self.line_offset..offset) {
            self.line += between.matches('\n').count();
            if let Some(nl) = between.rfind('\n') {
                self.line_offset += nl + 1;
            }
            let column = text
                .get(self.line_offset..offset)
                .map_or(0, |s| s.chars().count())
                + 1;
            return (self.line, column);
        }
        line_col(text, offset)
    }
}

fn assemble(
    schema: Schema,
    set: PolicySet,
    located: HashMap<String, Located>,
    files: &[PolicyText],
    warnings: Vec<PolicyDiagnostic>,
) -> LoadedPolicies {
    let mut by_index: Vec<Policy> = set.policies().cloned().collect();
    // A stable order (by id) makes slice keys and debugging reproducible.
    by_index.sort_by(|a, b| AsRef::<str>::as_ref(a.id()).cmp(b.id().as_ref()));
    let index = ScopeIndex::build(&by_index);
    let paths: Vec<Arc<Path>> = files.iter().map(|f| Arc::from(f.path.as_path())).collect();
    let origins = located
        .into_iter()
        .filter_map(|(id, l)| {
            let file = paths.get(l.file)?.clone();
            Some((
                id,
                PolicyOrigin {
                    file,
                    line: l.line,
                    column: l.column,
                },
            ))
        })
        .collect();
    let entity_types = schema
        .entity_types()
        .map(|t| (t.to_string(), t.clone()))
        .collect();
    let actions = action_table(&schema);
    let reads = by_index.iter().map(|_| OnceLock::new()).collect();
    LoadedPolicies {
        schema,
        policies: set,
        by_index,
        index,
        slices: SliceCache::default(),
        reads,
        entity_cache: EntityCache::default(),
        gate_cache: GateCache::default(),
        entity_types,
        actions,
        origins,
        warnings,
    }
}
