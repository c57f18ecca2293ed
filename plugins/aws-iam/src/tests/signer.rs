//! A test-only SigV4 signer (AWS Signature Version 4, header form) and the
//! matching check a fake STS uses. Follows the published algorithm: canonical
//! request, string to sign, derived key, HMAC-SHA256.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Temporary credentials of one test workload.
#[derive(Debug, Clone, Copy)]
pub struct Creds {
    pub key_id: &'static str,
    pub secret: &'static str,
    pub session_token: Option<&'static str>,
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 unreserved characters pass, everything else is %XX (SigV4).
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k), uri_encode(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The hex signature of a request. `headers` are looked up
/// case-insensitively for each of `signed` (lowercase, sorted).
pub fn signature(
    secret: &str,
    method: &str,
    query: &str,
    headers: &[(String, String)],
    body: &str,
    signed: &[String],
    scope: (&str, &str, &str),
) -> String {
    let (date, region, service) = scope;
    let canonical_headers: String = signed
        .iter()
        .map(|name| {
            let value = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            format!("{name}:{value}\n")
        })
        .collect();
    let canonical_request = format!(
        "{method}\n/\n{}\n{canonical_headers}\n{}\n{}",
        canonical_query(query),
        signed.join(";"),
        sha256_hex(body.as_bytes())
    );
    let amz_date = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex::encode(hmac(&k_signing, &string_to_sign))
}

/// The `Authorization` header value.
pub fn authorization(
    creds: &Creds,
    signature: &str,
    signed: &[String],
    scope: (&str, &str, &str),
) -> String {
    let (date, region, service) = scope;
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={signature}",
        creds.key_id,
        signed.join(";")
    )
}

#[test]
fn matches_the_aws_documentation_example() {
    // The GET example of the "Create a signed AWS API request" guide
    // (IAM ListUsers, secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY).
    let headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded; charset=utf-8".to_string(),
        ),
        ("host".to_string(), "iam.amazonaws.com".to_string()),
        ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
    ];
    let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
        .map(String::from)
        .to_vec();
    let sig = signature(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "GET",
        "Action=ListUsers&Version=2010-05-08",
        &headers,
        "",
        &signed,
        ("20150830", "us-east-1", "iam"),
    );
    assert_eq!(
        sig,
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}
