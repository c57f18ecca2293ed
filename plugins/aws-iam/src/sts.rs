//! Step 5: replay the signed request to STS through the host and read the
//! caller identity STS answers.
//!
//! The request goes out exactly as signed: same method, headers (the
//! signature covers them) and body, to the token's URL or, when
//! `sts_endpoint` is set, to that endpoint with the token's path and query
//! and the original `Host` header kept. Nothing is cached (`no-store`).
//! STS answers XML unless the request carried `Accept: application/json`;
//! both are read strictly.

use serde_json::Value;

use crate::config::AwsIamConfig;
use crate::error::{AuthFailure, invalid, quote, unavailable};
use crate::token::SignedRequest;
use crate::xml;

/// Largest STS answer we read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A request for the host to send (always `no-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends a request through the host; the error is the host's reason.
pub trait Transport {
    fn send(&self, request: &Outbound) -> Result<Answer, String>;
}

/// What STS said about the caller (not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

/// The request to send for `request`.
pub fn outbound(request: &SignedRequest, config: &AwsIamConfig) -> Outbound {
    let base = match &config.sts_endpoint {
        Some(endpoint) => endpoint.0.clone(),
        None => format!("https://{}", request.host),
    };
    Outbound {
        method: "POST".to_string(),
        url: format!("{base}{}", request.path_and_query()),
        headers: request.headers.clone(),
        body: request.body.as_bytes().to_vec(),
    }
}

/// Replays `request` and returns the caller identity from a 200 answer.
pub fn replay(
    request: &SignedRequest,
    config: &AwsIamConfig,
    transport: &dyn Transport,
) -> Result<CallerIdentity, AuthFailure> {
    let out = outbound(request, config);
    let answer = transport
        .send(&out)
        .map_err(|e| unavailable(format!("STS call failed: POST {}: {e}", out.url)))?;
    match answer.status {
        200 => {}
        300..=399 => {
            return Err(invalid(
                "STS answered with a redirect; redirects are never followed",
            ));
        }
        status => {
            let code = error_code(&answer.body);
            if code.as_deref() == Some("ExpiredToken") {
                return Err(AuthFailure::Expired(
                    "STS says the session token has expired: ExpiredToken".to_string(),
                ));
            }
            let code = code.unwrap_or_else(|| "(no error code)".to_string());
            return Err(if status == 403 {
                invalid(format!("STS rejected the signature: {code}"))
            } else {
                unavailable(format!(
                    "STS answered HTTP {status} for POST {}: {code}",
                    out.url
                ))
            });
        }
    }
    if answer.body.len() > MAX_ANSWER_BYTES {
        return Err(unavailable(format!(
            "STS answered {} bytes, over the {MAX_ANSWER_BYTES}-byte limit",
            answer.body.len()
        )));
    }
    let text = std::str::from_utf8(&answer.body)
        .map_err(|_| unavailable("STS answered a body that is not UTF-8"))?;
    let trimmed = text.trim_start();
    let identity = if trimmed.starts_with('{') {
        from_json(trimmed)
    } else {
        from_xml(trimmed)
    };
    identity.map_err(|e| unavailable(format!("STS answered something unreadable: {e}")))
}

/// `GetCallerIdentityResponse/GetCallerIdentityResult/{Arn,UserId,Account}`,
/// each exactly once and a leaf.
fn from_xml(text: &str) -> Result<CallerIdentity, String> {
    let root = xml::parse(text).map_err(|e| format!("invalid XML: {e}"))?;
    if root.name != "GetCallerIdentityResponse" {
        return Err(format!(
            "the root element is {}, not GetCallerIdentityResponse",
            quote(&root.name)
        ));
    }
    let result = exactly_one(&root, "GetCallerIdentityResult")?;
    let leaf = |name: &str| -> Result<String, String> {
        let element = exactly_one(result, name)?;
        if element.children.is_empty() {
            Ok(element.text.clone())
        } else {
            Err(format!("`{name}` has child elements"))
        }
    };
    Ok(CallerIdentity {
        arn: leaf("Arn")?,
        user_id: leaf("UserId")?,
        account: leaf("Account")?,
    })
}

fn exactly_one<'a>(parent: &'a xml::Element, name: &'a str) -> Result<&'a xml::Element, String> {
    let mut found = parent.children_named(name);
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(format!("no `{name}` in `{}`", parent.name)),
        (Some(_), Some(_)) => Err(format!("`{name}` appears more than once")),
    }
}

/// `{"GetCallerIdentityResponse":{"GetCallerIdentityResult":{"Arn","UserId","Account"}}}`.
fn from_json(text: &str) -> Result<CallerIdentity, String> {
    let value = crate::json::parse(text.as_bytes()).map_err(|e| format!("invalid JSON: {e}"))?;
    let result = value
        .get("GetCallerIdentityResponse")
        .and_then(|r| r.get("GetCallerIdentityResult"))
        .ok_or("no GetCallerIdentityResponse.GetCallerIdentityResult object")?;
    let field = |name: &str| match result.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("no `{name}` string")),
    };
    Ok(CallerIdentity {
        arn: field("Arn")?,
        user_id: field("UserId")?,
        account: field("Account")?,
    })
}

/// The error code of an STS error answer, XML (`<Code>…</Code>`, also in
/// moto's `<Errors>` wrapper) or JSON (`{"Error":{"Code":…}}`). Only used
/// in messages, so a plain scan is enough; odd codes are dropped.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let code = if text.trim_start().starts_with('{') {
        let value = crate::json::parse(text.as_bytes()).ok()?;
        value.get("Error")?.get("Code")?.as_str()?.to_string()
    } else {
        let start = text.find("<Code>")? + "<Code>".len();
        let len = text[start..].find("</Code>")?;
        text[start..start + len].trim().to_string()
    };
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    ok.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moto's `GET_CALLER_IDENTITY_RESPONSE` shape.
    const MOTO_OK: &str =
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::111122223333:assumed-role/TaskRole/task-0123abcd</Arn>
    <UserId>AROAAAAAAAAAAAAAAAAAA:task-0123abcd</UserId>
    <Account>111122223333</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
";

    #[test]
    fn reads_xml_and_json_answers() {
        let expected = CallerIdentity {
            arn: "arn:aws:sts::111122223333:assumed-role/TaskRole/task-0123abcd".into(),
            user_id: "AROAAAAAAAAAAAAAAAAAA:task-0123abcd".into(),
            account: "111122223333".into(),
        };
        assert_eq!(from_xml(MOTO_OK).unwrap(), expected);
        let json = r#"{"GetCallerIdentityResponse":{"GetCallerIdentityResult":{"Account":"111122223333","Arn":"arn:aws:sts::111122223333:assumed-role/TaskRole/task-0123abcd","UserId":"AROAAAAAAAAAAAAAAAAAA:task-0123abcd"},"ResponseMetadata":{"RequestId":"x"}}}"#;
        assert_eq!(from_json(json).unwrap(), expected);
    }

    #[test]
    fn refuses_odd_answers() {
        for (doc, needle) in [
            (MOTO_OK.replace("GetCallerIdentityResponse", "AssumeRoleResponse"), "root element"),
            (
                MOTO_OK.replace("<Account>", "<Account>1</Account><Account>"),
                "`Account` appears more than once",
            ),
            (
                MOTO_OK.replace(
                    "<Arn>",
                    "<Arn>arn:aws:sts::444455556666:assumed-role/Evil/x</Arn></GetCallerIdentityResult><GetCallerIdentityResult><Arn>",
                ),
                "`GetCallerIdentityResult` appears more than once",
            ),
            (
                MOTO_OK.replace(
                    "<UserId>AROAAAAAAAAAAAAAAAAAA:task-0123abcd</UserId>",
                    "<UserId><X/></UserId>",
                ),
                "`UserId` has child elements",
            ),
            (MOTO_OK.replace("<UserId>", "<UserId><X/>"), "mixes text and elements"),
            (MOTO_OK.replace("  <GetCallerIdentityResult>\n", ""), "invalid XML"),
            (MOTO_OK.replace("<Arn>", "<!-- x --><Arn>"), "invalid XML"),
            (
                MOTO_OK.replace("<Account>111122223333</Account>", ""),
                "no `Account` in `GetCallerIdentityResult`",
            ),
        ] {
            let e = from_xml(&doc).unwrap_err();
            assert!(e.contains(needle), "{doc}: {e}");
        }
        for (doc, needle) in [
            (
                r#"{"GetCallerIdentityResponse":{}}"#,
                "no GetCallerIdentityResponse",
            ),
            (
                r#"{"GetCallerIdentityResponse":{"GetCallerIdentityResult":{"Arn":"a","Arn":"b"}}}"#,
                "duplicate member `Arn`",
            ),
            (
                r#"{"GetCallerIdentityResponse":{"GetCallerIdentityResult":{"Arn":"a","UserId":1}}}"#,
                "no `UserId` string",
            ),
        ] {
            let e = from_json(doc).unwrap_err();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }

    #[test]
    fn error_codes() {
        let moto = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n  <ErrorResponse>\n    <Errors>\n      <Error>\n        <Code>SignatureDoesNotMatch</Code>\n        <Message><![CDATA[The request signature we calculated does not match]]></Message>\n      </Error>\n    </Errors>\n  <RequestId>7a62c49f</RequestId>\n</ErrorResponse>\n";
        assert_eq!(
            error_code(moto.as_bytes()).as_deref(),
            Some("SignatureDoesNotMatch")
        );
        let json =
            r#"{"Error":{"Code":"ExpiredToken","Message":"x","Type":"Sender"},"RequestId":"r"}"#;
        assert_eq!(error_code(json.as_bytes()).as_deref(), Some("ExpiredToken"));
        assert_eq!(error_code(b"<Code>a b</Code>"), None);
        assert_eq!(error_code(b"Internal Server Error"), None);
        assert_eq!(error_code(&[0xff, 0xfe]), None);
    }
}
