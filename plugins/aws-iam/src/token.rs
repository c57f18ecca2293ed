//! Step 1: the credential's envelope. The credential is the JSON form GCP
//! workload identity federation uses for AWS subject tokens (before GCP's
//! extra URL-encoding):
//!
//! ```json
//! {"url":"https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
//!  "method":"POST",
//!  "headers":[{"key":"host","value":"sts.us-east-1.amazonaws.com"}, ...],
//!  "body":""}
//! ```
//!
//! Checked here: size cap (before parsing), strict JSON with exactly these
//! four members, `POST`, an `https://` URL whose host is in `sts_hosts` with
//! no user information, no port, path `/` and no fragment, and the
//! parameters: exactly `Action=GetCallerIdentity` and `Version=2011-06-15`,
//! either in the query (body empty) or in the body (no query).

use serde_json::{Map, Value};

use crate::config::AwsIamConfig;
use crate::error::{AuthFailure, invalid, malformed, quote};

/// The one action a token may ask for.
pub const ACTION: &str = "GetCallerIdentity";
/// The STS API version.
pub const VERSION: &str = "2011-06-15";

/// A parsed credential: the envelope is checked, the headers are not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The URL's host, one of `sts_hosts`.
    pub host: String,
    /// The query (already allow-listed), without `?`.
    pub query: Option<String>,
    /// The headers in the credential's order and spelling.
    pub headers: Vec<(String, String)>,
    /// The body (already allow-listed): empty or the parameters.
    pub body: String,
}

impl SignedRequest {
    /// The path and query the request was signed for: `/` or `/?<query>`.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("/?{q}"),
            None => "/".to_string(),
        }
    }
}

/// Parses and checks the envelope of `token`.
pub fn parse(token: &[u8], config: &AwsIamConfig) -> Result<SignedRequest, AuthFailure> {
    if token.len() > config.max_token_bytes {
        return Err(malformed(format!(
            "credential is {} bytes, over the {}-byte limit",
            token.len(),
            config.max_token_bytes
        )));
    }
    if token.is_empty() {
        return Err(malformed("credential is empty"));
    }
    if token.len() >= 3 && token[..3].eq_ignore_ascii_case(b"%7b") {
        return Err(malformed(
            "credential looks URL-encoded (GCP's `subject_token` form); send the JSON itself",
        ));
    }
    if token.first() != Some(&b'{') {
        return Err(malformed(
            "credential is not a JSON object (expected the serialized signed request: \
             {\"url\", \"method\", \"headers\", \"body\"})",
        ));
    }
    let value = crate::json::parse(token)
        .map_err(|e| malformed(format!("credential is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(malformed("credential is not a JSON object"));
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "url" | "method" | "headers" | "body"))
    {
        return Err(malformed(format!(
            "credential has an unexpected member {}; expected exactly `url`, `method`, `headers`, `body`",
            quote(key)
        )));
    }
    let url = string_member(&object, "url")?;
    let method = string_member(&object, "method")?;
    let headers = headers_member(&object)?;
    let body = string_member(&object, "body")?;

    if method != "POST" {
        return Err(invalid(format!(
            "method {} is not allowed; the signed GetCallerIdentity request must be a POST",
            quote(method)
        )));
    }
    let (host, query) = check_url(url, &config.sts_hosts)?;
    let query = match (query, body.is_empty()) {
        (Some(q), true) => {
            check_params(q, "query")?;
            Some(q.to_string())
        }
        (None, false) => {
            check_params(body, "body")?;
            None
        }
        (Some(_), false) => {
            return Err(invalid(
                "parameters in both the URL query and the body; put Action and Version in one of them",
            ));
        }
        (None, true) => {
            return Err(invalid(format!(
                "no Action={ACTION} in the URL query or the body"
            )));
        }
    };
    Ok(SignedRequest {
        host: host.to_string(),
        query,
        headers,
        body: body.to_string(),
    })
}

fn string_member<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, AuthFailure> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(format!(
            "credential member `{name}` is not a string"
        ))),
        None => Err(malformed(format!("credential has no `{name}` member"))),
    }
}

/// `headers`: an array of `{"key": string, "value": string}` objects.
fn headers_member(object: &Map<String, Value>) -> Result<Vec<(String, String)>, AuthFailure> {
    let Some(value) = object.get("headers") else {
        return Err(malformed("credential has no `headers` member"));
    };
    let Value::Array(items) = value else {
        return Err(malformed("credential member `headers` is not an array"));
    };
    let shape = || {
        malformed("each entry of `headers` must be an object {\"key\": string, \"value\": string}")
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(entry) = item else {
                return Err(shape());
            };
            match (entry.len(), entry.get("key"), entry.get("value")) {
                (2, Some(Value::String(k)), Some(Value::String(v))) => Ok((k.clone(), v.clone())),
                _ => Err(shape()),
            }
        })
        .collect()
}

/// Checks the URL and returns its host and query (without `?`).
fn check_url<'a>(
    url: &'a str,
    sts_hosts: &[String],
) -> Result<(&'a str, Option<&'a str>), AuthFailure> {
    if let Some(b) = url.bytes().find(|b| !(0x21..0x7f).contains(b)) {
        return Err(malformed(format!(
            "the URL contains the byte 0x{b:02x}; it must be printable ASCII without spaces"
        )));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(format!(
            "the URL {} must start with `https://`",
            quote(url)
        )));
    };
    if url.contains('#') {
        return Err(invalid(format!(
            "the URL {} must not have a fragment",
            quote(url)
        )));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(invalid(format!(
            "the URL {} must not contain user information",
            quote(url)
        )));
    }
    if authority.is_empty() {
        return Err(malformed(format!("the URL {} has no host", quote(url))));
    }
    if !authority.starts_with('[') && authority.contains(':') {
        return Err(invalid(format!(
            "the URL {} must not name a port; STS is reached on the default https port",
            quote(url)
        )));
    }
    if !sts_hosts.iter().any(|h| h == authority) {
        return Err(AuthFailure::Untrusted(format!(
            "STS host {} is not in `sts_hosts` (compared exactly, in lowercase)",
            quote(authority)
        )));
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    // An empty path is `/` on the wire (google-auth for Python writes
    // `https://sts.<region>.amazonaws.com?Action=...`).
    if !path.is_empty() && path != "/" {
        return Err(invalid(format!(
            "the URL path {} is not allowed; it must be `/`",
            quote(path)
        )));
    }
    if query == Some("") {
        return Err(invalid(format!(
            "the URL {} has an empty query; leave out the `?`",
            quote(url)
        )));
    }
    Ok((authority, query))
}

/// `Action=GetCallerIdentity` and `Version=2011-06-15`, each exactly once,
/// in any order, nothing else (names compared case-insensitively for the
/// duplicate and unknown checks, then exactly).
fn check_params(params: &str, place: &str) -> Result<(), AuthFailure> {
    let mut action = false;
    let mut version = false;
    for pair in params.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let seen = if name.eq_ignore_ascii_case("Action") {
            &mut action
        } else if name.eq_ignore_ascii_case("Version") {
            &mut version
        } else {
            return Err(invalid(format!(
                "parameter {} in the {place} is not allowed; only Action={ACTION} and Version={VERSION}",
                quote(name)
            )));
        };
        if *seen {
            return Err(invalid(format!(
                "parameter {} appears twice in the {place}",
                quote(name)
            )));
        }
        *seen = true;
        let expected = if name.eq_ignore_ascii_case("Action") {
            ("Action", ACTION)
        } else {
            ("Version", VERSION)
        };
        if name != expected.0 {
            return Err(invalid(format!(
                "parameter {} in the {place} must be spelled `{}`",
                quote(name),
                expected.0
            )));
        }
        if value != expected.1 {
            return Err(invalid(format!(
                "{}={} in the {place} is not allowed; only {}={}",
                expected.0,
                quote(value),
                expected.0,
                expected.1
            )));
        }
    }
    if !action {
        return Err(invalid(format!("the {place} has no Action={ACTION}")));
    }
    if !version {
        return Err(invalid(format!("the {place} has no Version={VERSION}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AwsIamConfig {
        AwsIamConfig::parse(r#"{"audience":"a","trusted_accounts":["111122223333"]}"#).unwrap()
    }

    fn token(url: &str, body: &str) -> String {
        serde_json::json!({"url": url, "method": "POST", "headers": [], "body": body}).to_string()
    }

    const Q: &str = "Action=GetCallerIdentity&Version=2011-06-15";

    #[test]
    fn accepts_query_and_body_forms() {
        let r = parse(
            token(&format!("https://sts.us-east-1.amazonaws.com/?{Q}"), "").as_bytes(),
            &config(),
        )
        .unwrap();
        assert_eq!(r.host, "sts.us-east-1.amazonaws.com");
        assert_eq!(r.path_and_query(), format!("/?{Q}"));
        let r = parse(
            token(
                "https://sts.amazonaws.com/",
                "Version=2011-06-15&Action=GetCallerIdentity",
            )
            .as_bytes(),
            &config(),
        )
        .unwrap();
        assert_eq!(r.query, None);
        assert_eq!(r.path_and_query(), "/");
        // No path at all is `/` on the wire.
        let r = parse(
            token(&format!("https://sts.amazonaws.com?{Q}"), "").as_bytes(),
            &config(),
        )
        .unwrap();
        assert_eq!(r.path_and_query(), format!("/?{Q}"));
        let r = parse(token("https://sts.amazonaws.com", Q).as_bytes(), &config()).unwrap();
        assert_eq!(r.path_and_query(), "/");
    }

    #[test]
    fn refuses_bad_envelopes() {
        let url = format!("https://sts.amazonaws.com/?{Q}");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "credential is empty"),
            ("%7B%22url%22".to_string(), "looks URL-encoded"),
            ("[1]".to_string(), "not a JSON object"),
            (" {}".to_string(), "not a JSON object"),
            ("{\"url\":1".to_string(), "not valid JSON"),
            (
                format!(
                    r#"{{"url":"{url}","url":"{url}","method":"POST","headers":[],"body":""}}"#
                ),
                "duplicate member `url`",
            ),
            (
                format!(r#"{{"url":"{url}","method":"POST","headers":[],"body":"","x":1}}"#),
                "unexpected member `x`",
            ),
            (
                format!(r#"{{"url":"{url}","method":"POST","headers":[]}}"#),
                "no `body` member",
            ),
            (
                format!(r#"{{"url":"{url}","method":"POST","headers":{{}},"body":""}}"#),
                "`headers` is not an array",
            ),
            (
                format!(r#"{{"url":"{url}","method":"POST","headers":[["host","x"]],"body":""}}"#),
                "must be an object",
            ),
            (
                format!(
                    r#"{{"url":"{url}","method":"POST","headers":[{{"key":"a","value":"b","x":"c"}}],"body":""}}"#
                ),
                "must be an object",
            ),
            (
                format!(
                    r#"{{"url":"{url}","method":"POST","headers":[{{"key":"a","key":"b","value":"c"}}],"body":""}}"#
                ),
                "duplicate member `key`",
            ),
            (
                format!(r#"{{"url":"{url}","method":"POST","headers":[],"body":1}}"#),
                "`body` is not a string",
            ),
            (
                format!("https://sts.amazonaws.com/?{Q} "),
                "printable ASCII without spaces",
            ),
        ];
        for (t, needle) in cases {
            let t = if t.starts_with("https://") {
                token(&t, "")
            } else {
                t
            };
            let e = parse(t.as_bytes(), &config()).unwrap_err();
            assert!(matches!(e, AuthFailure::Malformed(_)), "{t}: {e:?}");
            assert!(e.reason().contains(needle), "{t}: {e:?}");
        }
    }

    #[test]
    fn size_cap_comes_first() {
        let mut c = config();
        c.max_token_bytes = 10;
        let e = parse(b"{\"url\":1,\"url\":2}", &c).unwrap_err();
        assert_eq!(
            e,
            AuthFailure::Malformed("credential is 17 bytes, over the 10-byte limit".to_string())
        );
    }

    #[test]
    fn refuses_methods_urls_and_parameters() {
        let t = serde_json::json!({"url": format!("https://sts.amazonaws.com/?{Q}"),
            "method": "GET", "headers": [], "body": ""})
        .to_string();
        let e = parse(t.as_bytes(), &config()).unwrap_err();
        assert!(e.reason().contains("method `GET` is not allowed"), "{e:?}");

        let cases: Vec<(String, &str, &str)> = vec![
            (
                format!("http://sts.amazonaws.com/?{Q}"),
                "",
                "must start with `https://`",
            ),
            (
                format!("HTTPS://sts.amazonaws.com/?{Q}"),
                "",
                "must start with `https://`",
            ),
            (format!("https://sts.amazonaws.com/?{Q}#x"), "", "fragment"),
            (
                format!("https://u:p@sts.amazonaws.com/?{Q}"),
                "",
                "user information",
            ),
            (
                format!("https://sts.amazonaws.com:8443/?{Q}"),
                "",
                "must not name a port",
            ),
            (
                format!("https://sts.amazonaws.com:443/?{Q}"),
                "",
                "must not name a port",
            ),
            (
                format!("https://127.0.0.1:5000/?{Q}"),
                "",
                "must not name a port",
            ),
            (
                format!("https://sts.amazonaws.com/x?{Q}"),
                "",
                "path `/x` is not allowed",
            ),
            (
                format!("https://sts.amazonaws.com//?{Q}"),
                "",
                "path `//` is not allowed",
            ),
            ("https://sts.amazonaws.com/?".to_string(), "", "empty query"),
            (
                format!("https://sts.amazonaws.com/?{Q}"),
                Q,
                "both the URL query and the body",
            ),
            (
                "https://sts.amazonaws.com/".to_string(),
                "",
                "no Action=GetCallerIdentity",
            ),
            (
                format!("https://sts.amazonaws.com/?{Q}&Action=GetCallerIdentity"),
                "",
                "`Action` appears twice",
            ),
            (
                format!("https://sts.amazonaws.com/?{Q}&action=GetCallerIdentity"),
                "",
                "`action` appears twice",
            ),
            (
                format!("https://sts.amazonaws.com/?{Q}&RoleArn=x"),
                "",
                "parameter `RoleArn` in the query is not allowed",
            ),
            (
                format!("https://sts.amazonaws.com/?{Q}&"),
                "",
                "parameter `` in the query is not allowed",
            ),
            (
                "https://sts.amazonaws.com/?Action=GetCallerIdentity".to_string(),
                "",
                "the query has no Version=2011-06-15",
            ),
            (
                "https://sts.amazonaws.com/?action=GetCallerIdentity&Version=2011-06-15"
                    .to_string(),
                "",
                "must be spelled `Action`",
            ),
            (
                "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-16"
                    .to_string(),
                "",
                "Version=`2011-06-16` in the query is not allowed",
            ),
            (
                "https://sts.amazonaws.com/?Action=Get%43allerIdentity&Version=2011-06-15"
                    .to_string(),
                "",
                "Action=`Get%43allerIdentity` in the query is not allowed",
            ),
            (
                "https://sts.amazonaws.com/".to_string(),
                "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/x",
                "Action=`AssumeRole` in the body is not allowed",
            ),
            (
                "https://sts.amazonaws.com/".to_string(),
                "Action=GetCallerIdentity&Version=2011-06-15\n",
                "Version=`2011-06-15\\n` in the body is not allowed",
            ),
        ];
        for (url, body, needle) in cases {
            let e = parse(token(&url, body).as_bytes(), &config()).unwrap_err();
            assert!(matches!(e, AuthFailure::Invalid(_)), "{url}: {e:?}");
            assert!(e.reason().contains(needle), "{url} {body}: {e:?}");
        }

        for url in [
            format!("https://sts.example.com/?{Q}"),
            format!("https://169.254.169.254/?{Q}"),
            format!("https://127.0.0.1/?{Q}"),
            format!("https://[::1]/?{Q}"),
            format!("https://STS.amazonaws.com/?{Q}"),
            format!("https://sts.amazonaws.com./?{Q}"),
        ] {
            let e = parse(token(&url, "").as_bytes(), &config()).unwrap_err();
            assert!(matches!(e, AuthFailure::Untrusted(_)), "{url}: {e:?}");
            assert!(e.reason().contains("is not in `sts_hosts`"), "{e:?}");
        }
    }
}
