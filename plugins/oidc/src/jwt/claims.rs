//! Claim checks (RFC 7519 §4.1, RFC 8725 §3.8–3.9), done by hand so that
//! nothing depends on a library's defaults. Run only after the signature
//! verified.

use serde_json::{Map, Value};

use crate::config::OidcConfig;
use crate::error::{AuthFailure, quote, quote_list};

/// The largest NumericDate accepted (9999-12-31T23:59:59Z).
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;
/// The most groups a token may carry when `groups_claim` is set. Dropping
/// the excess would silently bypass `forbid` policies on those groups.
pub const MAX_GROUPS: usize = 1000;

/// The claims the identity is built from, all checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub iss: String,
    pub sub: String,
    pub exp: u64,
    pub email: Option<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
}

fn invalid(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Invalid(reason.into())
}

/// Checks the claims set of a token whose signature verified, at time `now`
/// (Unix seconds).
pub fn check(
    claims: &Map<String, Value>,
    config: &OidcConfig,
    now: u64,
) -> Result<VerifiedClaims, AuthFailure> {
    let leeway = config.leeway_seconds;

    let iss = match claims.get("iss") {
        Some(Value::String(iss)) => iss,
        Some(_) => return Err(invalid("claim `iss` is not a string")),
        None => return Err(invalid("token has no `iss` claim")),
    };
    if *iss != config.issuer {
        return Err(AuthFailure::Untrusted(format!(
            "issuer {} is not the configured issuer",
            quote(iss)
        )));
    }

    check_audience(claims.get("aud"), &config.audiences)?;

    let exp = numeric_date(claims, "exp", Rounding::Down)?
        .ok_or_else(|| invalid("token has no `exp` claim"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(AuthFailure::Expired(format!(
            "token expired at {} (now {}, leeway {leeway}s)",
            rfc3339(exp),
            rfc3339(now)
        )));
    }
    if let Some(nbf) = numeric_date(claims, "nbf", Rounding::Up)?
        && now.saturating_add(leeway) < nbf
    {
        return Err(AuthFailure::Expired(format!(
            "token is not valid before {} (now {}, leeway {leeway}s)",
            rfc3339(nbf),
            rfc3339(now)
        )));
    }
    if let Some(iat) = numeric_date(claims, "iat", Rounding::Up)?
        && iat > now.saturating_add(leeway)
    {
        return Err(invalid(format!(
            "token was issued in the future, at {} (now {}, leeway {leeway}s)",
            rfc3339(iat),
            rfc3339(now)
        )));
    }

    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if sub.is_empty() => return Err(invalid("claim `sub` is empty")),
        Some(Value::String(sub)) => sub.clone(),
        Some(_) => return Err(invalid("claim `sub` is not a string")),
        None => return Err(invalid("token has no `sub` claim")),
    };

    let email = match claims.get("email") {
        Some(Value::String(email)) => Some(email.clone()),
        _ => None,
    };

    let groups = match &config.groups_claim {
        Some(name) => groups(claims.get(name), name)?,
        None => Vec::new(),
    };

    Ok(VerifiedClaims {
        iss: iss.clone(),
        sub,
        exp,
        email,
        scopes: scopes(claims)?,
        groups,
    })
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); one of them
/// must be configured.
fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), AuthFailure> {
    let presented: Vec<&str> = match aud {
        None => return Err(invalid("token has no `aud` claim")),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("claim `aud` must be a string or an array of strings"))?,
        Some(_) => {
            return Err(invalid(
                "claim `aud` must be a string or an array of strings",
            ));
        }
    };
    if presented.iter().any(|a| accepted.iter().any(|ok| ok == a)) {
        return Ok(());
    }
    let expected = quote_list(accepted.iter().map(String::as_str));
    Err(invalid(match presented[..] {
        [] => format!("token has an empty `aud` claim; expected one of {expected}"),
        [one] => format!(
            "audience {} is not accepted; expected one of {expected}",
            quote(one)
        ),
        _ => format!(
            "audiences {} are not accepted; expected one of {expected}",
            quote_list(presented.iter().take(8).copied())
        ),
    }))
}

/// Scopes from `scope` (space-separated, RFC 8693/9068) or, failing that,
/// `scp` (an array, or a space-separated string as some IdPs send it).
/// Duplicates are dropped; the result is sorted.
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, AuthFailure> {
    let mut out: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        (Some(_), _) => return Err(invalid("claim `scope` is not a string")),
        (None, Some(Value::String(s))) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("claim `scp` must be a string or an array of strings"))?,
        (None, Some(_)) => {
            return Err(invalid(
                "claim `scp` must be a string or an array of strings",
            ));
        }
        (None, None) => Vec::new(),
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The configured groups claim: absent means no groups; anything but an
/// array of strings is refused rather than ignored.
fn groups(value: Option<&Value>, name: &str) -> Result<Vec<String>, AuthFailure> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(invalid(format!(
            "claim {} must be an array of strings",
            quote(name)
        )));
    };
    if items.len() > MAX_GROUPS {
        return Err(invalid(format!(
            "claim {} lists {} groups, over the limit of {MAX_GROUPS}",
            quote(name),
            items.len()
        )));
    }
    let mut out = items
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid(format!("claim {} must be an array of strings", quote(name))))?;
    out.sort();
    out.dedup();
    Ok(out)
}

#[derive(Clone, Copy)]
enum Rounding {
    Down,
    Up,
}

/// Reads a NumericDate claim (seconds since the epoch, possibly fractional).
/// Fractions round towards the stricter side: `exp` down, `nbf`/`iat` up.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    rounding: Rounding,
) -> Result<Option<u64>, AuthFailure> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let bad = || invalid(format!("claim `{name}` is not a valid NumericDate"));
    let Value::Number(n) = value else {
        return Err(bad());
    };
    let secs = if let Some(u) = n.as_u64() {
        u
    } else {
        let f = n.as_f64().ok_or_else(bad)?;
        if !f.is_finite() || f < 0.0 || f > MAX_NUMERIC_DATE as f64 {
            return Err(bad());
        }
        // In range and finite, so the casts are exact after rounding.
        match rounding {
            Rounding::Down => f.floor() as u64,
            Rounding::Up => f.ceil() as u64,
        }
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(bad());
    }
    Ok(Some(secs))
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn config(extra: &str) -> OidcConfig {
        OidcConfig::parse(&format!(
            r#"{{"issuer":"https://id.example.com","audiences":["api","other"]{extra}}}"#
        ))
        .unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn good() -> Value {
        json!({"iss":"https://id.example.com","aud":"api","sub":"alice","exp":NOW + 600,"iat":NOW,"nbf":NOW})
    }

    fn with(key: &str, value: Value) -> Map<String, Value> {
        let mut c = claims(good());
        c.insert(key.to_string(), value);
        c
    }

    fn without(key: &str) -> Map<String, Value> {
        let mut c = claims(good());
        c.remove(key);
        c
    }

    #[test]
    fn accepts_good_claims() {
        let v = check(&claims(good()), &config(""), NOW).unwrap();
        assert_eq!(v.iss, "https://id.example.com");
        assert_eq!(v.sub, "alice");
        assert_eq!(v.exp, NOW + 600);
        assert_eq!(v.email, None);
        assert!(v.scopes.is_empty());
        assert!(v.groups.is_empty());
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [
            "https://id.example.com/",
            "https://ID.example.com",
            "https://evil.example",
        ] {
            assert_eq!(
                check(&with("iss", json!(iss)), &config(""), NOW).unwrap_err(),
                AuthFailure::Untrusted(format!("issuer `{iss}` is not the configured issuer"))
            );
        }
        assert!(matches!(
            check(&without("iss"), &config(""), NOW),
            Err(AuthFailure::Invalid(_))
        ));
        assert!(matches!(
            check(&with("iss", json!(1)), &config(""), NOW),
            Err(AuthFailure::Invalid(_))
        ));
    }

    #[test]
    fn audience_rules() {
        assert!(check(&with("aud", json!(["x", "other"])), &config(""), NOW).is_ok());
        assert_eq!(
            check(&with("aud", json!("x")), &config(""), NOW).unwrap_err(),
            AuthFailure::Invalid(
                "audience `x` is not accepted; expected one of `api`, `other`".to_string()
            )
        );
        assert_eq!(
            check(&with("aud", json!(["x", "y"])), &config(""), NOW).unwrap_err(),
            AuthFailure::Invalid(
                "audiences `x`, `y` are not accepted; expected one of `api`, `other`".to_string()
            )
        );
        for (aud, needle) in [
            (json!([]), "empty `aud`"),
            (json!(["api", 1]), "must be a string or an array"),
            (json!(1), "must be a string or an array"),
            (json!("API"), "audience `API` is not accepted"),
        ] {
            let e = check(&with("aud", aud.clone()), &config(""), NOW).unwrap_err();
            assert!(e.reason().contains(needle), "{aud}: {e:?}");
        }
        assert_eq!(
            check(&without("aud"), &config(""), NOW).unwrap_err(),
            AuthFailure::Invalid("token has no `aud` claim".to_string())
        );
    }

    #[test]
    fn expiry_with_leeway() {
        let cfg = config("");
        // Valid while now < exp + leeway.
        assert!(check(&with("exp", json!(NOW - 59)), &cfg, NOW).is_ok());
        assert_eq!(
            check(&with("exp", json!(NOW - 60)), &cfg, NOW).unwrap_err(),
            AuthFailure::Expired(
                "token expired at 2023-11-14T22:12:20Z (now 2023-11-14T22:13:20Z, leeway 60s)"
                    .to_string()
            )
        );
        let strict = config(r#","leeway_seconds":0"#);
        assert!(check(&with("exp", json!(NOW + 1)), &strict, NOW).is_ok());
        assert!(check(&with("exp", json!(NOW)), &strict, NOW).is_err());
        // Fractions round down for exp.
        assert!(check(&with("exp", json!(NOW as f64 + 0.9)), &strict, NOW).is_err());
        assert_eq!(
            check(&without("exp"), &cfg, NOW).unwrap_err(),
            AuthFailure::Invalid("token has no `exp` claim".to_string())
        );
        for bad in [
            json!("1700000000"),
            json!(-1),
            json!(1e300),
            json!(null),
            json!(u64::MAX),
        ] {
            assert!(
                check(&with("exp", bad.clone()), &cfg, NOW)
                    .unwrap_err()
                    .reason()
                    .contains("not a valid NumericDate"),
                "{bad}"
            );
        }
    }

    #[test]
    fn not_before_and_issued_at() {
        let cfg = config("");
        assert!(check(&with("nbf", json!(NOW + 60)), &cfg, NOW).is_ok());
        assert_eq!(
            check(&with("nbf", json!(NOW + 61)), &cfg, NOW).unwrap_err(),
            AuthFailure::Expired(
                "token is not valid before 2023-11-14T22:14:21Z (now 2023-11-14T22:13:20Z, leeway 60s)".to_string()
            )
        );
        assert!(check(&with("nbf", json!(NOW as f64 + 60.5)), &cfg, NOW).is_err());
        assert!(check(&with("iat", json!(NOW + 60)), &cfg, NOW).is_ok());
        let e = check(&with("iat", json!(NOW + 61)), &cfg, NOW).unwrap_err();
        assert!(matches!(e, AuthFailure::Invalid(_)));
        assert!(e.reason().starts_with("token was issued in the future"));
        assert!(check(&without("nbf"), &cfg, NOW).is_ok());
        assert!(check(&without("iat"), &cfg, NOW).is_ok());
    }

    #[test]
    fn subject_required() {
        for (c, reason) in [
            (without("sub"), "token has no `sub` claim"),
            (with("sub", json!("")), "claim `sub` is empty"),
            (with("sub", json!(5)), "claim `sub` is not a string"),
        ] {
            assert_eq!(
                check(&c, &config(""), NOW).unwrap_err(),
                AuthFailure::Invalid(reason.to_string())
            );
        }
    }

    #[test]
    fn email_and_scopes() {
        let v = check(&with("email", json!("a@example.com")), &config(""), NOW).unwrap();
        assert_eq!(v.email.as_deref(), Some("a@example.com"));
        let v = check(&with("email", json!(true)), &config(""), NOW).unwrap();
        assert_eq!(v.email, None);

        let v = check(&with("scope", json!("b a  b")), &config(""), NOW).unwrap();
        assert_eq!(v.scopes, vec!["a", "b"]);
        let v = check(&with("scp", json!(["x", "y"])), &config(""), NOW).unwrap();
        assert_eq!(v.scopes, vec!["x", "y"]);
        let v = check(&with("scp", json!("x y")), &config(""), NOW).unwrap();
        assert_eq!(v.scopes, vec!["x", "y"]);
        let mut both = with("scope", json!("s"));
        both.insert("scp".to_string(), json!(["t"]));
        assert_eq!(check(&both, &config(""), NOW).unwrap().scopes, vec!["s"]);
        assert!(check(&with("scope", json!(["s"])), &config(""), NOW).is_err());
        assert!(check(&with("scp", json!([1])), &config(""), NOW).is_err());
    }

    #[test]
    fn groups_claim() {
        let cfg = config(r#","groups_claim":"groups""#);
        let v = check(&with("groups", json!(["b", "a", "b"])), &cfg, NOW).unwrap();
        assert_eq!(v.groups, vec!["a", "b"]);
        assert!(check(&claims(good()), &cfg, NOW).unwrap().groups.is_empty());
        for bad in [json!("admins"), json!([1]), json!({"a":1})] {
            assert_eq!(
                check(&with("groups", bad), &cfg, NOW).unwrap_err(),
                AuthFailure::Invalid("claim `groups` must be an array of strings".to_string())
            );
        }
        let many: Vec<String> = (0..=MAX_GROUPS).map(|i| i.to_string()).collect();
        assert!(check(&with("groups", json!(many)), &cfg, NOW).is_err());
        // Without groups_claim the claim is ignored.
        assert!(
            check(&with("groups", json!("x")), &config(""), NOW)
                .unwrap()
                .groups
                .is_empty()
        );
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(MAX_NUMERIC_DATE), "9999-12-31T23:59:59Z");
    }
}
