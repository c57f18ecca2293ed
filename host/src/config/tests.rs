use super::*;

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse(Path::new("/nonexistent/intentgate.toml"), text)
}

const MINIMAL: &str = r#"
[policy]
policies = ["policies"]

[[listener]]
name = "l"
protocol = "http"
bind = "127.0.0.1:0"
identity = "oidc"
connector = "http"
credential = { header = "authorization", scheme = "Bearer" }
upstream = "http://127.0.0.1:9"
"#;

#[test]
fn an_unknown_key_is_an_error_with_its_line() {
    let errors = parse("[policy]\npolicies = []\nwatsh = true\n").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(3), "{}", errors[0]);
    assert!(errors[0].message.contains("watsh"), "{}", errors[0]);
}

#[test]
fn references_to_missing_plugins_name_the_line() {
    let errors = parse(MINIMAL).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains(":9:") && e.contains("no [[identity]] named `oidc`")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains(":10:") && e.contains("no [[connector]] named `http`")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains(":3:") && e.contains("does not exist")),
        "{text:?}"
    );
}

#[test]
fn bad_review_dates_and_origins_are_reported() {
    let text = r#"
[policy]
policies = []

[[identity]]
name = "oidc"
plugin = "x.wasm"
outbound = [{ origin = "https://issuer.example/path" }]

[[trust_anchor]]
id = "https://issuer.example"
provider = "oidc"
reviewed = "2026-02-30"
"#;
    let errors = parse(text).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains(":8:") && e.contains("has a path")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains(":13:") && e.contains("not a date")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains(":7:") && e.contains("does not exist")),
        "{text:?}"
    );
}

#[test]
fn line_and_column_count_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}

fn grpc_listener(extra: &str) -> String {
    format!(
        r#"
[policy]
policies = ["policies"]

[[listener]]
name = "g"
protocol = "grpc"
bind = "0.0.0.0:9010"
identity = "oidc"
connector = "spanner"
upstream = "https://spanner.googleapis.com"
{extra}
"#
    )
}

fn messages(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn grpc_listener_keys_are_checked_where_they_are() {
    let errors = messages(&grpc_listener(
        "credential = { header = \"authorization\", ambient_file = \"token\" }\nupstream_connections = 0\nupstream_credential = { google = {}, header = \"x\" }",
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.contains(":8:") && e.contains("must bind a loopback address")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(":13:")
                && e.contains("`upstream_connections` must be within 1..=64")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(":14:") && e.contains("not several")),
        "{errors:?}"
    );
    // gRPC-only keys on an HTTP listener are refused, not ignored.
    let errors = messages(&format!("{MINIMAL}max_message_bytes = 10\n"));
    assert!(
        errors
            .iter()
            .any(|e| e
                .contains("`max_message_bytes` applies to `protocol = \"grpc\"` listeners only")),
        "{errors:?}"
    );
    // A gRPC upstream names no path.
    let errors = messages(&grpc_listener("credential = {}").replace(
        "https://spanner.googleapis.com",
        "https://spanner.googleapis.com/v1",
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("gRPC paths name the method")),
        "{errors:?}"
    );
}
