//! Builds the one Cedar schema policies are validated against: the host's
//! base fragment plus every plugin and operator fragment, with the
//! `Intentgate::Principal` placeholder replaced by the principal types of
//! the loaded identity plugins (connectors cannot know those).

use std::collections::BTreeSet;

use cedar_policy::{Schema, SchemaFragment};
use serde_json::Value;

use super::{PolicyDiagnostic, SchemaFragmentSource};

/// The host's base fragment (namespace `Intentgate`).
pub(super) const BASE_FRAGMENT: &str = include_str!("../../../policies/base.cedarschema");
/// Origin named in diagnostics about the base fragment.
const BASE_ORIGIN: &str = "intentgate base schema";
/// The placeholder connector fragments write as an action's principal.
pub(super) const PLACEHOLDER: &str = "Intentgate::Principal";

/// The merged schema and what is worth a warning about it.
pub(super) struct BuiltSchema {
    pub schema: Schema,
    pub warnings: Vec<PolicyDiagnostic>,
}

struct Parsed<'a> {
    source: &'a SchemaFragmentSource,
    fragment: SchemaFragment,
    json: Value,
}

/// Parses, rewrites and merges the fragments. Reports every syntax error of
/// every fragment; a merge error (Cedar reports one) is attributed to the
/// fragment that most likely caused it.
pub(super) fn build(
    fragments: &[SchemaFragmentSource],
    principal_types: &[String],
) -> Result<BuiltSchema, Vec<PolicyDiagnostic>> {
    let base = SchemaFragmentSource {
        origin: BASE_ORIGIN.to_owned(),
        text: BASE_FRAGMENT.to_owned(),
    };
    let sources: Vec<&SchemaFragmentSource> = std::iter::once(&base).chain(fragments).collect();

    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut parsed = Vec::new();
    for source in &sources {
        match SchemaFragment::from_cedarschema_str(&source.text) {
            Ok((fragment, schema_warnings)) => {
                for w in schema_warnings {
                    warnings.push(PolicyDiagnostic::from_cedar(
                        &w,
                        Some(source.origin.clone().into()),
                        Some(&source.text),
                        None,
                    ));
                }
                // Keep the parsed fragment too: fragments we do not rewrite
                // are merged as parsed, with their source locations.
                match fragment.clone().to_json_value() {
                    Ok(json) => parsed.push(Parsed {
                        source,
                        fragment,
                        json,
                    }),
                    Err(e) => errors.push(PolicyDiagnostic::from_cedar(
                        &e,
                        Some(source.origin.clone().into()),
                        Some(&source.text),
                        None,
                    )),
                }
            }
            Err(e) => errors.push(PolicyDiagnostic::from_cedar(
                &e,
                Some(source.origin.clone().into()),
                Some(&source.text),
                None,
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let declared: BTreeSet<String> = parsed
        .iter()
        .flat_map(|p| declared_entity_types(&p.json))
        .collect();
    for ty in principal_types {
        if !declared.contains(ty) {
            errors.push(
                PolicyDiagnostic::new(format!("principal type `{ty}` is not declared by any schema fragment"))
                    .with_help(format!(
                        "an identity plugin lists `{ty}` in its principal types; its schema fragment must declare that entity type"
                    )),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut merged = Vec::with_capacity(parsed.len());
    for p in parsed {
        let Parsed {
            source,
            fragment,
            mut json,
        } = p;
        let placeholders = replace_placeholder(&mut json, principal_types);
        if placeholders.is_empty() {
            merged.push(fragment);
            continue;
        }
        if principal_types.is_empty() {
            warnings.push(
                PolicyDiagnostic::new(format!(
                    "actions {} are written for `{PLACEHOLDER}`, but no identity plugin is loaded, so no request can use them",
                    placeholders.join(", ")
                ))
                .in_file(&source.origin)
                .with_help("load an identity plugin, or name concrete principal types in the action's appliesTo"),
            );
        }
        match SchemaFragment::from_json_value(json) {
            Ok(f) => merged.push(f),
            Err(e) => errors.push(PolicyDiagnostic::from_cedar(
                &e,
                Some(source.origin.clone().into()),
                None,
                None,
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // `from_schema_fragments` rather than 4.14's `Schema::schema_link`:
    // linking needs every piece to be a schema on its own, with `external`
    // declarations for what it borrows, and plugin fragments refer to the
    // base fragment's common type `Intentgate::Gate` (common types cannot be
    // declared external) without declaring anything. Merging fragments
    // resolves references across all of them, which is what plugins need.
    match Schema::from_schema_fragments(merged) {
        Ok(schema) => Ok(BuiltSchema { schema, warnings }),
        Err(e) => Err(vec![attribute_merge_error(&e, &sources)]),
    }
}

/// Rewrites every action `appliesTo.principalTypes` that names the
/// placeholder. Returns the actions it rewrote (for the warning when there
/// are no principal types).
fn replace_placeholder(json: &mut Value, principal_types: &[String]) -> Vec<String> {
    let mut rewritten = Vec::new();
    let Some(namespaces) = json.as_object_mut() else {
        return rewritten;
    };
    for (ns, body) in namespaces {
        let Some(actions) = body.get_mut("actions").and_then(Value::as_object_mut) else {
            continue;
        };
        for (action, decl) in actions {
            let Some(list) = decl
                .pointer_mut("/appliesTo/principalTypes")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            let is_placeholder = |v: &Value| {
                v.as_str()
                    .is_some_and(|s| s == PLACEHOLDER || (ns == "Intentgate" && s == "Principal"))
            };
            if !list.iter().any(is_placeholder) {
                continue;
            }
            list.retain(|v| !is_placeholder(v));
            for ty in principal_types {
                if !list.iter().any(|v| v.as_str() == Some(ty)) {
                    list.push(Value::String(ty.clone()));
                }
            }
            let action_type = if ns.is_empty() {
                "Action".to_owned()
            } else {
                format!("{ns}::Action")
            };
            rewritten.push(format!("{action_type}::{action:?}"));
        }
    }
    rewritten
}

/// Fully qualified entity types a fragment declares (JSON schema form).
fn declared_entity_types(json: &Value) -> Vec<String> {
    let Some(namespaces) = json.as_object() else {
        return Vec::new();
    };
    namespaces
        .iter()
        .flat_map(|(ns, body)| {
            body.get("entityTypes")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|types| types.keys())
                .map(move |name| {
                    if ns.is_empty() {
                        name.clone()
                    } else {
                        format!("{ns}::{name}")
                    }
                })
        })
        .collect()
}

/// Cedar reports one merge error and, for fragments that went through JSON,
/// no position. Attribute it to the fragments whose text mentions a name
/// from the message, so the operator knows which plugin or file to look at.
fn attribute_merge_error(
    err: &cedar_policy::SchemaError,
    sources: &[&SchemaFragmentSource],
) -> PolicyDiagnostic {
    let message = err.to_string();
    let help = miette::Diagnostic::help(err).map(|h| h.to_string());
    let mut diag = PolicyDiagnostic::new(format!("schema fragments do not combine: {message}"));
    if let Some(help) = &help {
        diag = diag.with_help(help.clone());
    }
    for name in names_in(&message, help.as_deref().unwrap_or_default()) {
        let mentions: Vec<(&SchemaFragmentSource, usize)> = sources
            .iter()
            .filter_map(|source| find_word(&source.text, &name).map(|offset| (*source, offset)))
            .collect();
        let Some(((first, offset), rest)) = mentions.split_first() else {
            continue;
        };
        if !rest.is_empty() {
            let also: Vec<String> = rest
                .iter()
                .map(|(s, o)| {
                    format!(
                        "{} line {}",
                        s.origin,
                        super::diagnostic::line_col(&s.text, *o).0
                    )
                })
                .collect();
            diag = diag.with_help(format!("`{name}` also appears in {}", also.join(", ")));
        }
        return diag.in_file(&first.origin).at_offset(&first.text, *offset);
    }
    diag.with_help(format!(
        "the fragments are: {}",
        sources
            .iter()
            .map(|s| s.origin.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Names worth searching the fragments for: the comma-separated list after
/// the message's last colon ("failed to resolve types: A, B::C"), then
/// backquoted names (`X::A`, or the quoted id of `X::Action::"read"`), most
/// specific first.
fn names_in(message: &str, help: &str) -> Vec<String> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.split("::")
                .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    let mut names: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    if let Some(pos) = message.rfind(": ") {
        for item in message.get(pos + 2..).unwrap_or_default().split(',') {
            if is_name(item.trim()) {
                push(item.trim().to_owned());
            }
        }
    }
    for text in [message, help] {
        for (i, part) in text.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if is_name(part) {
                push(part.to_owned());
                if let Some((_, base)) = part.rsplit_once("::") {
                    push(base.to_owned());
                }
            } else if let Some((_, id)) = part.rsplit_once("::")
                && id.starts_with('"')
                && id.ends_with('"')
                && id.len() >= 2
            {
                push(id.to_owned());
            }
        }
    }
    names
}

/// Byte offset of `word` in `text` where it is not part of a longer name.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut start = 0;
    while let Some(found) = text.get(start..)?.find(word) {
        let at = start + found;
        let end = at + word.len();
        let before_ok = text
            .get(..at)
            .and_then(|s| s.chars().next_back())
            .is_none_or(|c| !ident(c) && c != ':');
        let after_ok = text
            .get(end..)
            .and_then(|s| s.chars().next())
            .is_none_or(|c| !ident(c));
        if before_ok && after_ok {
            return Some(at);
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_cedar_messages() {
        assert_eq!(
            names_in(
                "failed to resolve types: Nope, Z::C",
                "neither `X::Nope` nor `Nope` refers to anything"
            ),
            ["Nope", "Z::C", "X::Nope"]
        );
        assert_eq!(names_in("duplicate entity type `X::A`", ""), ["X::A", "A"]);
        assert_eq!(
            names_in("duplicate action `S::Action::\"read\"`", ""),
            ["\"read\""]
        );
    }

    #[test]
    fn find_word_skips_longer_names() {
        assert_eq!(find_word("entity Nopes; entity Nope;", "Nope"), Some(21));
        assert_eq!(find_word("X::Nope", "Nope"), None);
    }
}
