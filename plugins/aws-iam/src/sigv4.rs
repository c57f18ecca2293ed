//! Step 3: the SigV4 `Authorization` header, parsed strictly, and the
//! binding checks that rest on it. The signature itself is verified by STS;
//! what matters here is that our reading of the request agrees with STS's:
//!
//! * `AWS4-HMAC-SHA256 Credential=<AKID>/<YYYYMMDD>/<region>/sts/aws4_request,
//!   SignedHeaders=<a;b;c>, Signature=<64 hex>` (components in this order);
//! * the credential scope's date is the `X-Amz-Date` day;
//! * `SignedHeaders` names only headers present in the request and includes
//!   `host`, `x-amz-date` and the audience header: STS ignores unsigned
//!   headers, so an unsigned audience header proves nothing (the Chainguard
//!   advisory GHSA-wq26-3j2m-4hvv);
//! * the audience header carries exactly the configured audience.

use crate::clock::AmzDate;
use crate::config::AwsIamConfig;
use crate::error::{AuthFailure, invalid, malformed, quote};
use crate::headers::{HeaderMap, is_lower_hex};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SHAPE: &str = "the Authorization header must be \
    `AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/sts/aws4_request, SignedHeaders=<names>, Signature=<64 hex>`";

/// The parts of the `Authorization` header we rely on (the signature is
/// checked for shape only and not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The credential scope's date, `YYYYMMDD`.
    pub date: String,
    /// The signed header names, lowercase, sorted.
    pub signed_headers: Vec<String>,
}

/// Parses an `Authorization` header value. Errors never quote the value.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthFailure> {
    let shape = |what: &str| malformed(format!("{SHAPE}: {what}"));
    let Some((algorithm, rest)) = value.split_once(' ') else {
        return Err(shape("no algorithm"));
    };
    if algorithm != ALGORITHM {
        return Err(invalid(format!(
            "the Authorization header uses the algorithm {}; only {ALGORITHM} is accepted",
            quote(algorithm)
        )));
    }
    let parts: Vec<&str> = rest.split(',').map(|p| p.trim_start_matches(' ')).collect();
    let [credential, signed_headers, signature] = parts[..] else {
        return Err(shape(&format!("{} components instead of 3", parts.len())));
    };
    let credential = credential
        .strip_prefix("Credential=")
        .ok_or_else(|| shape("the first component is not Credential="))?;
    let signed_headers = signed_headers
        .strip_prefix("SignedHeaders=")
        .ok_or_else(|| shape("the second component is not SignedHeaders="))?;
    let signature = signature
        .strip_prefix("Signature=")
        .ok_or_else(|| shape("the third component is not Signature="))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(shape("the credential scope does not have 5 parts"));
    };
    if !(16..=128).contains(&key_id.len())
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(shape(
            "the access key id is not 16 to 128 uppercase letters and digits",
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape("the credential date is not YYYYMMDD"));
    }
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(shape("the credential region is not a region name"));
    }
    if service != "sts" {
        return Err(invalid(format!(
            "the request is signed for the service {}, not `sts`",
            quote(service)
        )));
    }
    if terminator != "aws4_request" {
        return Err(shape("the credential scope does not end in aws4_request"));
    }

    let names: Vec<String> = signed_headers.split(';').map(str::to_string).collect();
    let name_ok = |n: &String| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !names.iter().all(name_ok) {
        return Err(shape(
            "SignedHeaders is not a `;`-separated list of lowercase names",
        ));
    }
    if !names.windows(2).all(|w| w[0] < w[1]) {
        return Err(shape("SignedHeaders is not sorted or repeats a name"));
    }
    if !is_lower_hex(signature, 64) {
        return Err(shape("the signature is not 64 lowercase hex digits"));
    }
    Ok(Authorization {
        date: date.to_string(),
        signed_headers: names,
    })
}

/// Parses the `Authorization` and `X-Amz-Date` headers and checks the
/// binding rules; returns the signing time.
pub fn check(headers: &HeaderMap, config: &AwsIamConfig) -> Result<AmzDate, AuthFailure> {
    let authorization = parse_authorization(headers.get("authorization").unwrap_or_default())?;
    let amz_date = headers.get("x-amz-date").unwrap_or_default();
    let date = AmzDate::parse(amz_date).ok_or_else(|| {
        malformed(format!(
            "X-Amz-Date {} is not a date of the form YYYYMMDDTHHMMSSZ",
            quote(amz_date)
        ))
    })?;
    if authorization.date != date.day() {
        return Err(invalid(format!(
            "the credential scope date {} is not the X-Amz-Date day {}",
            authorization.date,
            date.day()
        )));
    }
    let signed = &authorization.signed_headers;
    if let Some(absent) = signed.iter().find(|n| !headers.contains(n)) {
        return Err(invalid(format!(
            "SignedHeaders names {} but the request has no such header",
            quote(absent)
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !signed.iter().any(|n| n == required) {
            return Err(invalid(format!("`{required}` is not in SignedHeaders")));
        }
    }
    let audience_header = config.audience_header.as_str();
    if !signed.iter().any(|n| n == audience_header) {
        return Err(invalid(format!(
            "the audience header `{audience_header}` is not in SignedHeaders; STS ignores unsigned \
             headers, so an unsigned audience proves nothing (GHSA-wq26-3j2m-4hvv)"
        )));
    }
    let audience = headers.get(audience_header).unwrap_or_default();
    if audience != config.audience {
        return Err(invalid(format!(
            "the audience header carries {}, not this deployment's audience {}",
            quote(audience),
            quote(&config.audience)
        )));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn auth(credential: &str, signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={sig}")
    }

    #[test]
    fn parses_the_sdk_form() {
        let a = parse_authorization(&auth(
            "ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/sts/aws4_request",
            "host;x-amz-date;x-intentgate-audience",
            SIG,
        ))
        .unwrap();
        assert_eq!(a.date, "20260101");
        assert_eq!(
            a.signed_headers,
            vec!["host", "x-amz-date", "x-intentgate-audience"]
        );
        // Without spaces after the commas too.
        let compact = format!(
            "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/sts/aws4_request,SignedHeaders=host;x-amz-date,Signature={SIG}"
        );
        assert!(parse_authorization(&compact).is_ok());
    }

    #[test]
    fn refuses_other_shapes() {
        let cred = "ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/sts/aws4_request";
        let cases = [
            ("AWS4-HMAC-SHA256".to_string(), "no algorithm"),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host, Signature={SIG}, Signature={SIG}"
                ),
                "4 components",
            ),
            (
                format!("AWS4-HMAC-SHA256 SignedHeaders=host, Credential={cred}, Signature={SIG}"),
                "first component is not Credential=",
            ),
            (
                auth("ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/sts", "host", SIG),
                "does not have 5 parts",
            ),
            (
                auth("short/20260101/us-east-1/sts/aws4_request", "host", SIG),
                "access key id",
            ),
            (
                auth(
                    "ASIAEXAMPLEEXAMPLE12/2026-1-1/us-east-1/sts/aws4_request",
                    "host",
                    SIG,
                ),
                "not YYYYMMDD",
            ),
            (
                auth(
                    "ASIAEXAMPLEEXAMPLE12/20260101/US_EAST/sts/aws4_request",
                    "host",
                    SIG,
                ),
                "region",
            ),
            (
                auth(
                    "ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/sts/aws5_request",
                    "host",
                    SIG,
                ),
                "aws4_request",
            ),
            (auth(cred, "Host;x-amz-date", SIG), "lowercase names"),
            (auth(cred, "host;;x-amz-date", SIG), "lowercase names"),
            (auth(cred, "x-amz-date;host", SIG), "not sorted"),
            (auth(cred, "host;host", SIG), "not sorted"),
            (auth(cred, "host", &SIG.to_uppercase()), "64 lowercase hex"),
            (auth(cred, "host", &SIG[1..]), "64 lowercase hex"),
        ];
        for (value, needle) in cases {
            let e = parse_authorization(&value).unwrap_err();
            assert!(matches!(e, AuthFailure::Malformed(_)), "{value}: {e:?}");
            assert!(e.reason().contains(needle), "{value}: {e:?}");
            assert!(!e.reason().contains(SIG), "the signature leaked: {e:?}");
        }
        let e = parse_authorization(&auth(
            "ASIAEXAMPLEEXAMPLE12/20260101/us-east-1/s3/aws4_request",
            "host",
            SIG,
        ))
        .unwrap_err();
        assert_eq!(
            e,
            AuthFailure::Invalid("the request is signed for the service `s3`, not `sts`".into())
        );
        let e = parse_authorization(&format!("AWS4-HMAC-SHA512 Credential={cred}")).unwrap_err();
        assert!(matches!(e, AuthFailure::Invalid(_)), "{e:?}");
    }
}
