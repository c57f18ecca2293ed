//! End-to-end tests of [`crate::verify::verify`] and [`crate::identity`]:
//! requests signed with a real SigV4 signer, checked by a fake STS that
//! verifies signatures and records what would have left the sandbox.

mod fake_sts;
mod signer;

use serde_json::{Value, json};

use crate::config::AwsIamConfig;
use crate::error::AuthFailure;
use crate::identity;
use crate::sts::Answer;
use crate::verify::{Verified, verify};
use fake_sts::{FakeSts, Workload, moto_xml};
use signer::Creds;

/// 2026-01-01T00:00:00Z.
const SIGNED_AT: u64 = 1_767_225_600;
const AMZ_DATE: &str = "20260101T000000Z";
const NOW: u64 = SIGNED_AT + 60;
const AUDIENCE: &str = "intentgate-prod";
const HOST: &str = "sts.us-east-1.amazonaws.com";
const PARAMS: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const TASK: &str = "8f03e41243824aea923aca126495f665";

const TASK_ROLE: Creds = Creds {
    key_id: "ASIAEXAMPLETASKROLE1",
    secret: "task/role+secret",
    session_token: Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN"),
};
const OTHER_ACCOUNT: Creds = Creds {
    key_id: "ASIAEXAMPLEOTHERACC1",
    secret: "other-secret",
    session_token: Some("IQoJOTHER"),
};
const BATCH_ROLE: Creds = Creds {
    key_id: "ASIAEXAMPLEBATCHROL1",
    secret: "batch-secret",
    session_token: Some("IQoJBATCH"),
};
const IAM_USER: Creds = Creds {
    key_id: "AKIAEXAMPLEIAMUSER01",
    secret: "user-secret",
    session_token: None,
};

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            creds: TASK_ROLE,
            arn: "arn:aws:sts::111122223333:assumed-role/payments-api/8f03e41243824aea923aca126495f665",
            user_id: "AROAEXAMPLEROLEID0001:8f03e41243824aea923aca126495f665",
            account: "111122223333",
        },
        Workload {
            creds: OTHER_ACCOUNT,
            arn: "arn:aws:sts::444455556666:assumed-role/payments-api/task-1",
            user_id: "AROAEXAMPLEROLEID0002:task-1",
            account: "444455556666",
        },
        Workload {
            creds: BATCH_ROLE,
            arn: "arn:aws:sts::111122223333:assumed-role/batch-job/task-2",
            user_id: "AROAEXAMPLEROLEID0003:task-2",
            account: "111122223333",
        },
        Workload {
            creds: IAM_USER,
            arn: "arn:aws:iam::111122223333:user/alice",
            user_id: "AIDAEXAMPLEUSERID0001",
            account: "111122223333",
        },
    ]
}

fn sts() -> FakeSts {
    FakeSts::with(workloads())
}

fn config_with(extra: &str) -> AwsIamConfig {
    AwsIamConfig::parse(&format!(
        r#"{{"audience":"{AUDIENCE}","trusted_accounts":["111122223333"]{extra}}}"#
    ))
    .unwrap()
}

fn config() -> AwsIamConfig {
    config_with("")
}

/// What to sign and how to serialize it.
#[derive(Clone)]
struct Spec {
    url: String,
    method: String,
    body: String,
    creds: Creds,
    region: String,
    service: String,
    /// Overrides the credential scope's date.
    scope_date: Option<String>,
    /// `(name, value, signed)` in serialization order; `Authorization` is
    /// appended last.
    headers: Vec<(String, String, bool)>,
    /// Applied to the serialized headers after signing (tampering).
    after_signing: Vec<(String, String)>,
}

impl Spec {
    /// A valid GCP-style token (parameters in the query, empty body).
    fn new() -> Self {
        let mut spec = Spec {
            url: format!("https://{HOST}/?{PARAMS}"),
            method: "POST".to_string(),
            body: String::new(),
            creds: TASK_ROLE,
            region: "us-east-1".to_string(),
            service: "sts".to_string(),
            scope_date: None,
            headers: Vec::new(),
            after_signing: Vec::new(),
        };
        spec.set("host", HOST, true);
        spec.set("x-amz-date", AMZ_DATE, true);
        spec.set(
            "x-amz-security-token",
            TASK_ROLE.session_token.unwrap(),
            true,
        );
        spec.set("x-intentgate-audience", AUDIENCE, true);
        spec
    }

    /// Sets (or adds) a header.
    fn set(&mut self, name: &str, value: &str, signed: bool) -> &mut Self {
        match self.headers.iter_mut().find(|h| h.0 == name) {
            Some(h) => *h = (name.to_string(), value.to_string(), signed),
            None => self
                .headers
                .push((name.to_string(), value.to_string(), signed)),
        }
        self
    }

    fn remove(&mut self, name: &str) -> &mut Self {
        self.headers.retain(|h| h.0 != name);
        self
    }

    fn creds(&mut self, creds: Creds) -> &mut Self {
        self.creds = creds;
        match creds.session_token {
            Some(t) => self.set("x-amz-security-token", t, true),
            None => self.remove("x-amz-security-token"),
        }
    }

    fn signed_at(&mut self, amz_date: &str) -> &mut Self {
        self.set("x-amz-date", amz_date, true)
    }

    /// The serialized token.
    fn token(&self) -> Vec<u8> {
        self.json().to_string().into_bytes()
    }

    fn json(&self) -> Value {
        let amz_date = self
            .headers
            .iter()
            .find(|h| h.0 == "x-amz-date")
            .map(|h| h.1.clone())
            .unwrap_or_default();
        let date = self
            .scope_date
            .clone()
            .unwrap_or_else(|| amz_date.get(..8).unwrap_or_default().to_string());
        let mut signed: Vec<String> = self
            .headers
            .iter()
            .filter(|h| h.2)
            .map(|h| h.0.to_ascii_lowercase())
            .collect();
        signed.sort();
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|h| (h.0.clone(), h.1.clone()))
            .collect();
        let query = self.url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let scope = (date.as_str(), self.region.as_str(), self.service.as_str());
        let signature = signer::signature(
            self.creds.secret,
            &self.method,
            query,
            &headers,
            &self.body,
            &signed,
            scope,
        );
        let mut out: Vec<(String, String)> = headers;
        out.push((
            "Authorization".to_string(),
            signer::authorization(&self.creds, &signature, &signed, scope),
        ));
        for (name, value) in &self.after_signing {
            match out.iter_mut().find(|h| h.0.eq_ignore_ascii_case(name)) {
                Some(h) => h.1 = value.clone(),
                None => out.push((name.clone(), value.clone())),
            }
        }
        json!({
            "url": self.url,
            "method": self.method,
            "headers": out.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "body": self.body,
        })
    }
}

fn run(spec: &Spec, config: &AwsIamConfig, sts: &FakeSts) -> Result<Verified, AuthFailure> {
    verify(&spec.token(), config, sts, NOW)
}

/// Refused before anything left the sandbox.
fn refused_locally(spec: &Spec) -> AuthFailure {
    let sts = sts();
    let e = run(spec, &config(), &sts).unwrap_err();
    assert!(sts.sent().is_empty(), "sent to STS: {e:?}");
    e
}

/// An `AuthFailure` variant constructor.
type Kind = fn(String) -> AuthFailure;

#[track_caller]
fn assert_refusal(e: &AuthFailure, kind: Kind, needle: &str) {
    assert_eq!(
        std::mem::discriminant(e),
        std::mem::discriminant(&kind(String::new())),
        "{e:?}"
    );
    assert!(e.reason().contains(needle), "expected `{needle}` in {e:?}");
}

#[test]
fn accepts_a_valid_token() {
    let sts = sts();
    let spec = Spec::new();
    let verified = run(&spec, &config(), &sts).unwrap();
    assert_eq!(verified.expires_at, SIGNED_AT + 900);
    let p = identity::principal(&verified);
    assert_eq!(
        p.principal,
        (
            "Aws::Role".to_string(),
            "arn:aws:iam::111122223333:role/payments-api".to_string()
        )
    );
    assert_eq!(
        p.parents,
        vec![("Aws::Account".to_string(), "111122223333".to_string())]
    );
    let attrs: Value = serde_json::from_str(&p.attributes_json).unwrap();
    assert_eq!(
        attrs,
        json!({
            "account": "111122223333",
            "role_name": "payments-api",
            "session_name": TASK,
            "role_unique_id": "AROAEXAMPLEROLEID0001",
            "arn": format!("arn:aws:sts::111122223333:assumed-role/payments-api/{TASK}"),
        })
    );
    assert_eq!(p.expires_at, SIGNED_AT + 900);
    assert_eq!(p.trust_anchor, "111122223333");

    // Exactly one request, replayed as signed, to the token's URL.
    let sent = sts.sent();
    assert_eq!(sent.len(), 1);
    let token = spec.json();
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].url, token["url"].as_str().unwrap());
    let token_headers: Vec<(String, String)> = token["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_string(),
                h["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(sent[0].headers, token_headers);
    assert!(sent[0].body.is_empty());
}

#[test]
fn accepts_the_body_form_and_json_answers() {
    // Vault style: parameters in the body, signed Content-Type, global host.
    let mut spec = Spec::new();
    spec.url = "https://sts.amazonaws.com/".to_string();
    spec.body = PARAMS.to_string();
    spec.set("host", "sts.amazonaws.com", true)
        .set(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
            true,
        )
        .set("Content-Length", &PARAMS.len().to_string(), false)
        .set("User-Agent", "intentgate-sidecar/0.1", false);
    let sts = sts();
    let v = run(&spec, &config(), &sts).unwrap();
    assert_eq!(v.session.role_name, "payments-api");
    let sent = sts.sent();
    assert_eq!(sent[0].url, "https://sts.amazonaws.com/");
    assert_eq!(sent[0].body, PARAMS.as_bytes());

    // A signed Accept: application/json gets STS's JSON answer.
    let mut spec = Spec::new();
    spec.set("accept", "application/json", true);
    let v = run(&spec, &config(), &sts).unwrap();
    assert_eq!(v.role_unique_id, "AROAEXAMPLEROLEID0001");
}

#[test]
fn sts_endpoint_gets_the_replay_with_the_signed_host() {
    let config = config_with(r#","sts_endpoint":"http://127.0.0.1:5000""#);
    let sts = sts();
    let v = run(&Spec::new(), &config, &sts).unwrap();
    assert_eq!(v.session.account, "111122223333");
    let sent = sts.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, format!("http://127.0.0.1:5000/?{PARAMS}"));
    assert!(
        sent[0]
            .headers
            .contains(&("host".to_string(), HOST.to_string())),
        "{:?}",
        sent[0].headers
    );

    // The token's host must still be listed.
    let mut spec = Spec::new();
    spec.url = format!("https://127.0.0.1:5000/?{PARAMS}");
    spec.set("host", "127.0.0.1:5000", true);
    let sts = self::sts();
    let e = run(&spec, &config, &sts).unwrap_err();
    assert!(sts.sent().is_empty());
    assert_refusal(&e, AuthFailure::Invalid, "must not name a port");
}

#[test]
fn audience_header_must_be_present_signed_and_right() {
    let mut spec = Spec::new();
    spec.remove("x-intentgate-audience");
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "audience header `x-intentgate-audience` is missing",
    );

    // Present but not signed (GHSA-wq26-3j2m-4hvv): STS would accept it.
    let mut spec = Spec::new();
    spec.set("x-intentgate-audience", AUDIENCE, false);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "is not in SignedHeaders",
    );
    // Signed for another deployment, then rewritten: the signature would
    // fail at STS, but it never gets there.
    let mut spec = Spec::new();
    spec.set("x-intentgate-audience", "intentgate-dev", true);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "carries `intentgate-dev`, not this deployment's audience `intentgate-prod`",
    );
    // Header names are case-insensitive.
    let mut spec = Spec::new();
    spec.remove("x-intentgate-audience")
        .set("X-Intentgate-Audience", AUDIENCE, true);
    assert!(run(&spec, &config(), &sts()).is_ok());
    // A configured header name.
    let mut spec = Spec::new();
    spec.remove("x-intentgate-audience")
        .set("x-gateway", AUDIENCE, true);
    let config = config_with(r#","audience_header":"X-Gateway""#);
    assert!(run(&spec, &config, &sts()).is_ok());
}

#[test]
fn stale_and_future_dates_are_expired() {
    let mut spec = Spec::new();
    spec.signed_at("20251231T234459Z"); // 961 s before NOW
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Expired,
        "signed at 2025-12-31T23:44:59Z (961 s ago, now 2026-01-01T00:01:00Z); signatures older than 900 s",
    );
    let mut spec = Spec::new();
    spec.signed_at("20260101T001601Z"); // 901 s after NOW
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Expired,
        "901 s in the future",
    );
    // At the edges of the window.
    let mut spec = Spec::new();
    spec.signed_at("20251231T234600Z");
    let v = run(&spec, &config(), &sts()).unwrap();
    assert_eq!(v.expires_at, NOW);
    // A tighter window.
    let config = config_with(r#","max_clock_skew_seconds":30"#);
    let e = run(&Spec::new(), &config, &sts()).unwrap_err();
    assert_refusal(&e, AuthFailure::Expired, "older than 30 s");

    let mut spec = Spec::new();
    spec.signed_at("2026-01-01T00:00:00Z");
    spec.scope_date = Some("20260101".to_string());
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Malformed,
        "not a date of the form YYYYMMDDTHHMMSSZ",
    );
}

#[test]
fn credential_date_must_be_the_signing_day() {
    let mut spec = Spec::new();
    spec.scope_date = Some("20251231".to_string());
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "credential scope date 20251231 is not the X-Amz-Date day 20260101",
    );
}

#[test]
fn signed_headers_rules() {
    let mut spec = Spec::new();
    spec.set("host", HOST, false);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "`host` is not in SignedHeaders",
    );
    let mut spec = Spec::new();
    spec.set("x-amz-date", AMZ_DATE, false);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "`x-amz-date` is not in SignedHeaders",
    );
    let mut spec = Spec::new();
    spec.service = "s3".to_string();
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "signed for the service `s3`",
    );
    // A signed header that is not in the request (removed after signing).
    let mut spec = Spec::new();
    spec.set("user-agent", "ua", true);
    let mut token = spec.json();
    token["headers"]
        .as_array_mut()
        .unwrap()
        .retain(|h| h["key"] != "user-agent");
    let e = verify(token.to_string().as_bytes(), &config(), &sts(), NOW).unwrap_err();
    assert_refusal(
        &e,
        AuthFailure::Invalid,
        "SignedHeaders names `user-agent` but the request has no such header",
    );
}

#[test]
fn urls_outside_the_allow_list_never_reach_the_network() {
    let cases: [(&str, Kind, &str); 8] = [
        (
            "https://sts.example.com",
            AuthFailure::Untrusted,
            "not in `sts_hosts`",
        ),
        (
            "https://169.254.169.254",
            AuthFailure::Untrusted,
            "`169.254.169.254` is not in `sts_hosts`",
        ),
        (
            "https://127.0.0.1",
            AuthFailure::Untrusted,
            "`127.0.0.1` is not in `sts_hosts`",
        ),
        (
            "http://sts.us-east-1.amazonaws.com",
            AuthFailure::Invalid,
            "must start with `https://`",
        ),
        (
            "https://evil@sts.us-east-1.amazonaws.com",
            AuthFailure::Invalid,
            "user information",
        ),
        (
            "https://sts.us-east-1.amazonaws.com:8443",
            AuthFailure::Invalid,
            "must not name a port",
        ),
        (
            "https://sts.us-east-1.amazonaws.com/latest/meta-data",
            AuthFailure::Invalid,
            "path `/latest/meta-data` is not allowed",
        ),
        (
            "https://sts.us-east-1.amazonaws.com/%2e%2e/",
            AuthFailure::Invalid,
            "path `/%2e%2e` is not allowed",
        ),
    ];
    for (base, kind, needle) in cases {
        let mut spec = Spec::new();
        let base = base.trim_end_matches('/');
        spec.url = if base.matches('/').count() > 2 {
            format!("{base}?{PARAMS}")
        } else {
            format!("{base}/?{PARAMS}")
        };
        let host = base.split('/').nth(2).unwrap();
        spec.set("host", host.rsplit('@').next().unwrap(), true);
        assert_refusal(&refused_locally(&spec), kind, needle);
    }
    // A listed host, but the Host header names another.
    let mut spec = Spec::new();
    spec.set("host", "sts.amazonaws.com", true);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "the Host header `sts.amazonaws.com` is not the URL's host",
    );
    // A configured list replaces the default one.
    let config = config_with(r#","sts_hosts":["sts.eu-west-1.amazonaws.com"]"#);
    let sts = sts();
    let e = run(&Spec::new(), &config, &sts).unwrap_err();
    assert!(sts.sent().is_empty());
    assert_refusal(&e, AuthFailure::Untrusted, "not in `sts_hosts`");
}

#[test]
fn parameters_are_allow_listed() {
    let mut cases: Vec<(String, String, &str)> = vec![
        (
            format!("https://{HOST}/?{PARAMS}&Action=GetCallerIdentity"),
            String::new(),
            "`Action` appears twice in the query",
        ),
        (
            format!("https://{HOST}/?{PARAMS}&Version=2011-06-15"),
            String::new(),
            "`Version` appears twice in the query",
        ),
        (
            format!("https://{HOST}/?{PARAMS}&DurationSeconds=900"),
            String::new(),
            "parameter `DurationSeconds` in the query is not allowed",
        ),
        (
            format!("https://{HOST}/?{PARAMS}&X-Amz-Signature=00"),
            String::new(),
            "parameter `X-Amz-Signature` in the query is not allowed",
        ),
        (
            format!("https://{HOST}/"),
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::111122223333:role/admin&RoleSessionName=x"
                .to_string(),
            "Action=`AssumeRole` in the body is not allowed",
        ),
        (
            format!("https://{HOST}/?{PARAMS}"),
            "Action=AssumeRole".to_string(),
            "both the URL query and the body",
        ),
    ];
    cases.push((
        format!("https://{HOST}/"),
        format!("{PARAMS}&Action=GetCallerIdentity"),
        "`Action` appears twice in the body",
    ));
    for (url, body, needle) in cases {
        let mut spec = Spec::new();
        spec.url = url;
        spec.body = body;
        assert_refusal(&refused_locally(&spec), AuthFailure::Invalid, needle);
    }
    let mut spec = Spec::new();
    spec.method = "GET".to_string();
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "method `GET` is not allowed",
    );
}

#[test]
fn headers_are_allow_listed() {
    let mut token = Spec::new().json();
    token["headers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "Host", "value": HOST}));
    let e = verify(token.to_string().as_bytes(), &config(), &sts(), NOW).unwrap_err();
    assert_refusal(
        &e,
        AuthFailure::Invalid,
        "header `Host` appears more than once",
    );

    let mut token = Spec::new().json();
    token["headers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "X-INTENTGATE-AUDIENCE", "value": "intentgate-dev"}));
    let e = verify(token.to_string().as_bytes(), &config(), &sts(), NOW).unwrap_err();
    assert_refusal(
        &e,
        AuthFailure::Invalid,
        "`X-INTENTGATE-AUDIENCE` appears more than once",
    );

    let mut spec = Spec::new();
    spec.set(
        "x-amz-target",
        "AWSSecurityTokenServiceV20110615.AssumeRole",
        true,
    );
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "header `x-amz-target` is not allowed: the only x-amz-* headers",
    );
    let mut spec = Spec::new();
    spec.set("x-amz-user-agent", "x", false);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "header `x-amz-user-agent` is not allowed",
    );
    let mut spec = Spec::new();
    spec.set("x-forwarded-host", "evil.example", false);
    assert_refusal(
        &refused_locally(&spec),
        AuthFailure::Invalid,
        "header `x-forwarded-host` is not allowed",
    );
}

#[test]
fn oversize_tokens_are_refused_before_parsing() {
    let mut spec = Spec::new();
    spec.set("user-agent", &"u".repeat(9000), false);
    let e = refused_locally(&spec);
    assert_refusal(&e, AuthFailure::Malformed, "over the 8192-byte limit");
    assert!(e.reason().starts_with("credential is "), "{e:?}");
}

#[test]
fn sts_rejects_bad_signatures_and_ignores_unsigned_headers() {
    // The wrong secret: STS (here the fake) answers 403.
    let mut spec = Spec::new();
    spec.creds.secret = "not-the-secret";
    let sts = sts();
    let e = run(&spec, &config(), &sts).unwrap_err();
    assert_eq!(
        e,
        AuthFailure::Invalid("STS rejected the signature: SignatureDoesNotMatch".to_string())
    );
    assert_eq!(sts.sent().len(), 1);

    // A signed header changed after signing.
    let mut spec = Spec::new();
    spec.set("user-agent", "sidecar", true);
    spec.after_signing = vec![("user-agent".to_string(), "tampered".to_string())];
    let e = run(&spec, &config(), &sts).unwrap_err();
    assert_refusal(&e, AuthFailure::Invalid, "SignatureDoesNotMatch");

    // An unsigned header changed: STS does not care (which is why the
    // audience header must be signed).
    let mut spec = Spec::new();
    spec.set("user-agent", "sidecar", false);
    spec.after_signing = vec![("user-agent".to_string(), "tampered".to_string())];
    assert!(run(&spec, &config(), &sts).is_ok());

    // An unknown key id.
    let mut spec = Spec::new();
    spec.creds.key_id = "ASIAUNKNOWNKEYID0000";
    let e = run(&spec, &config(), &sts).unwrap_err();
    assert_eq!(
        e,
        AuthFailure::Invalid("STS rejected the signature: InvalidClientTokenId".to_string())
    );
}

#[test]
fn sts_answers_other_than_200() {
    let answer = |status: u16, body: &str| {
        Ok(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    };
    let cases: Vec<(Result<Answer, String>, Kind, &str)> = vec![
        (
            answer(307, ""),
            AuthFailure::Invalid,
            "STS answered with a redirect; redirects are never followed",
        ),
        (answer(301, ""), AuthFailure::Invalid, "redirect"),
        (
            answer(
                403,
                "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
            ),
            AuthFailure::Invalid,
            "STS rejected the signature: AccessDenied",
        ),
        (
            answer(403, "forbidden"),
            AuthFailure::Invalid,
            "STS rejected the signature: (no error code)",
        ),
        (
            answer(
                400,
                "<ErrorResponse><Error><Code>ExpiredToken</Code></Error></ErrorResponse>",
            ),
            AuthFailure::Expired,
            "session token has expired",
        ),
        (
            answer(
                400,
                "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>",
            ),
            AuthFailure::Unavailable,
            "STS answered HTTP 400 for POST https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15: Throttling",
        ),
        (answer(500, "oops"), AuthFailure::Unavailable, "HTTP 500"),
        (
            Err("denied by the host: plugin `aws-iam` has no grant".to_string()),
            AuthFailure::Unavailable,
            "STS call failed: POST https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15: denied by the host",
        ),
        (
            Err("timed out".to_string()),
            AuthFailure::Unavailable,
            "timed out",
        ),
    ];
    for (canned, kind, needle) in cases {
        let sts = FakeSts::canned(canned);
        let e = run(&Spec::new(), &config(), &sts).unwrap_err();
        assert_refusal(&e, kind, needle);
        assert_eq!(sts.sent().len(), 1);
    }
}

#[test]
fn accounts_roles_and_principal_kinds() {
    let mut spec = Spec::new();
    spec.creds(OTHER_ACCOUNT);
    let e = run(&spec, &config(), &sts()).unwrap_err();
    assert_eq!(
        e,
        AuthFailure::Untrusted("account `444455556666` is not in `trusted_accounts`".into())
    );
    let config2 = AwsIamConfig::parse(&format!(
        r#"{{"audience":"{AUDIENCE}","trusted_accounts":["111122223333","444455556666"]}}"#
    ))
    .unwrap();
    let v = run(&spec, &config2, &sts()).unwrap();
    assert_eq!(identity::principal(&v).trust_anchor, "444455556666");

    let patterns = config_with(r#","role_patterns":["payments-*","orders-?"]"#);
    assert!(run(&Spec::new(), &patterns, &sts()).is_ok());
    let mut spec = Spec::new();
    spec.creds(BATCH_ROLE);
    assert!(run(&spec, &config(), &sts()).is_ok());
    let e = run(&spec, &patterns, &sts()).unwrap_err();
    assert_eq!(
        e,
        AuthFailure::Untrusted("role `batch-job` matches none of `role_patterns`".into())
    );

    let mut spec = Spec::new();
    spec.creds(IAM_USER);
    let e = run(&spec, &config(), &sts()).unwrap_err();
    assert_refusal(
        &e,
        AuthFailure::Untrusted,
        "the caller is `arn:aws:iam::111122223333:user/alice` (an IAM user), not an IAM role session",
    );
}

#[test]
fn odd_sts_answers_fail_closed() {
    let role = "arn:aws:sts::111122223333:assumed-role/payments-api/task-1";
    let ok_xml = moto_xml(role, "AROAEXAMPLEROLEID0001:task-1", "111122223333");
    let cases: Vec<(String, &str)> = vec![
        (
            moto_xml("arn:aws:sts::111122223333", "AROAX:task-1", "111122223333"),
            "ARN that cannot be read",
        ),
        (
            moto_xml(
                "arn:aws:sts::111122223333:assumed-role/path/payments-api/task-1",
                "AROAX:task-1",
                "111122223333",
            ),
            "ARN that cannot be read",
        ),
        (
            moto_xml(role, "AROAEXAMPLEROLEID0001:task-1", "444455556666"),
            "answered the account `444455556666`",
        ),
        (
            moto_xml(role, "AROAEXAMPLEROLEID0001:task-9", "111122223333"),
            "the session names differ",
        ),
        (
            moto_xml(role, "AIDAEXAMPLEROLEID0001:task-1", "111122223333"),
            "not AROA",
        ),
        (
            ok_xml.replace("</GetCallerIdentityResponse>", ""),
            "not closed",
        ),
        (ok_xml.replace("<Arn>", "<Arn><![CDATA[x]]>"), "CDATA"),
        (
            format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{ok_xml}"),
            "expected a name",
        ),
        (
            ok_xml.replace("<Account>", "<Account>&xxe;"),
            "predefined entities",
        ),
        (
            ok_xml.replace(
                "<UserId>",
                "<Arn>arn:aws:sts::444455556666:assumed-role/x/y</Arn><UserId>",
            ),
            "`Arn` appears more than once",
        ),
        (
            "{\"GetCallerIdentityResponse\":1}".to_string(),
            "no GetCallerIdentityResponse",
        ),
        (String::new(), "invalid XML"),
    ];
    for (body, needle) in cases {
        let sts = FakeSts::canned(Ok(Answer {
            status: 200,
            body: body.clone().into_bytes(),
        }));
        let e = run(&Spec::new(), &config(), &sts).unwrap_err();
        assert_refusal(&e, AuthFailure::Unavailable, needle);
    }
    // The well-formed one passes.
    let sts = FakeSts::canned(Ok(Answer {
        status: 200,
        body: ok_xml.into_bytes(),
    }));
    assert!(run(&Spec::new(), &config(), &sts).is_ok());
}

#[test]
fn errors_never_carry_the_signature_or_session_token() {
    let mut spec = Spec::new();
    spec.creds.secret = "wrong";
    let token = String::from_utf8(spec.token()).unwrap();
    let signature = token
        .split("Signature=")
        .nth(1)
        .unwrap()
        .get(..64)
        .unwrap()
        .to_string();
    let mut specs = vec![spec.clone()];
    let mut s = spec.clone();
    s.service = "s3".into();
    specs.push(s);
    let mut s = spec.clone();
    s.after_signing = vec![(
        "Authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential=x, Signature={signature}"),
    )];
    specs.push(s);
    for s in specs {
        let e = run(&s, &config(), &sts()).unwrap_err();
        assert!(!e.reason().contains(&signature), "{e:?}");
        assert!(
            !e.reason().contains(TASK_ROLE.session_token.unwrap()),
            "{e:?}"
        );
    }
}

#[test]
fn schema_and_attributes_agree() {
    use cedar_policy::{Entities, Schema, SchemaFragment};

    let (fragment, warnings) = SchemaFragment::from_cedarschema_str(identity::CEDAR_SCHEMA)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(warnings.count(), 0);
    let schema = Schema::from_schema_fragments([fragment]).unwrap();
    let v = run(&Spec::new(), &config(), &sts()).unwrap();
    let p = identity::principal(&v);
    let entities = json!([
        {
            "uid": {"type": p.principal.0, "id": p.principal.1},
            "attrs": serde_json::from_str::<Value>(&p.attributes_json).unwrap(),
            "parents": p.parents.iter().map(|(t, id)| json!({"type": t, "id": id})).collect::<Vec<_>>(),
        },
        {"uid": {"type": "Aws::Account", "id": "111122223333"}, "attrs": {}, "parents": []},
    ]);
    Entities::from_json_value(entities, Some(&schema)).unwrap_or_else(|e| panic!("{e:?}"));
}
