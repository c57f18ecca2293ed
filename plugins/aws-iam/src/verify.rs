//! The whole verification, in a fixed order; each step is its own module:
//!
//! 1. [`token`]: size cap, strict JSON envelope, `POST`, URL (https, host in
//!    `sts_hosts`, no user information or port, path `/`), parameters;
//! 2. [`headers`]: allow-list, duplicates, `host` equals the URL host;
//! 3. [`sigv4`]: the `Authorization` header, credential date, SignedHeaders
//!    (`host`, `x-amz-date`, the audience header), the audience value;
//! 4. [`clock`]: `X-Amz-Date` within `max_clock_skew_seconds` of now;
//! 5. [`sts`]: the replay through the host, and STS's answer;
//! 6. [`arn`]: a role session, in a trusted account, matching
//!    `role_patterns`.
//!
//! Only step 5 leaves the sandbox, so nothing reaches STS before steps 1–4
//! passed.
//!
//! [`token`]: crate::token
//! [`headers`]: crate::headers
//! [`sigv4`]: crate::sigv4
//! [`clock`]: crate::clock
//! [`sts`]: crate::sts
//! [`arn`]: crate::arn

use crate::arn::{self, RoleSession};
use crate::config::AwsIamConfig;
use crate::error::{AuthFailure, quote};
use crate::sts::{self, Transport};
use crate::{clock, headers, sigv4, token};

/// A caller STS vouched for and the configuration accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub session: RoleSession,
    /// The role's unique id (`AROA…`).
    pub role_unique_id: String,
    /// Unix seconds after which STS would refuse this signed request:
    /// `X-Amz-Date` + `max_clock_skew_seconds`.
    pub expires_at: u64,
}

/// Verifies `credential` at `now` (Unix seconds).
pub fn verify(
    credential: &[u8],
    config: &AwsIamConfig,
    transport: &dyn Transport,
    now: u64,
) -> Result<Verified, AuthFailure> {
    let request = token::parse(credential, config)?;
    let headers = headers::check(
        &request.headers,
        &config.audience_header,
        &request.host,
        &request.body,
    )?;
    let signed_at = sigv4::check(&headers, config)?;
    clock::check_fresh(signed_at, now, config.max_clock_skew_seconds)?;

    let caller = sts::replay(&request, config, transport)?;

    let session = arn::parse(&caller.arn)?;
    if caller.account != session.account {
        return Err(AuthFailure::Unavailable(format!(
            "STS answered the account {} with the ARN {}",
            quote(&caller.account),
            quote(&caller.arn)
        )));
    }
    let role_unique_id = arn::role_unique_id(&caller.user_id, &session)?.to_string();
    if !config.trusted_accounts.contains(&session.account) {
        return Err(AuthFailure::Untrusted(format!(
            "account {} is not in `trusted_accounts`",
            quote(&session.account)
        )));
    }
    if !config.role_patterns.is_empty()
        && !config
            .role_patterns
            .iter()
            .any(|p| arn::glob_match(p, &session.role_name))
    {
        return Err(AuthFailure::Untrusted(format!(
            "role {} matches none of `role_patterns`",
            quote(&session.role_name)
        )));
    }
    Ok(Verified {
        session,
        role_unique_id,
        expires_at: signed_at.unix + config.max_clock_skew_seconds,
    })
}
