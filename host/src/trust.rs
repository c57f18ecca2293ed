//! Trust anchors: the issuers and accounts the operator trusts, each with
//! the date it was last reviewed. An anchor past its maximum age
//! authenticates no one until someone reviews it again.

use std::collections::HashMap;

use crate::clock;

/// One trusted anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// The identity provider instance that reports it.
    pub provider: String,
    /// What the provider reports (issuer URL, AWS account).
    pub id: String,
    /// Day of the last review, in days since the epoch.
    pub reviewed_day: i64,
    /// Days after the review at which the anchor stops authenticating.
    pub max_age_days: i64,
}

/// Why an anchor did not vouch for a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The provider reported an anchor the operator never configured.
    #[error(
        "trust anchor `{id}` reported by identity provider `{provider}` is not configured; add a [[trust_anchor]] for it"
    )]
    Unknown {
        /// Provider instance.
        provider: String,
        /// Anchor id.
        id: String,
    },
    /// The anchor's review is too old.
    #[error(
        "trust anchor `{id}` was last reviewed on {reviewed}, {age_days} days ago, past its maximum age of {max_age_days} days; \
         review it and update its `reviewed` date"
    )]
    Stale {
        /// Anchor id.
        id: String,
        /// Review date.
        reviewed: String,
        /// Age in days.
        age_days: i64,
        /// The maximum.
        max_age_days: i64,
    },
}

/// Every configured anchor, looked up by provider and id.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: HashMap<(String, String), TrustAnchor>,
}

impl TrustAnchors {
    /// Builds the set.
    pub fn new(anchors: impl IntoIterator<Item = TrustAnchor>) -> Self {
        Self {
            anchors: anchors
                .into_iter()
                .map(|a| ((a.provider.clone(), a.id.clone()), a))
                .collect(),
        }
    }

    /// The anchor's age in days if it may vouch for callers at `now_unix`.
    ///
    /// # Errors
    /// [`TrustError`] when the anchor is unknown or stale.
    pub fn check(&self, provider: &str, id: &str, now_unix: u64) -> Result<i64, TrustError> {
        let anchor = self
            .anchors
            .get(&(provider.to_string(), id.to_string()))
            .ok_or_else(|| TrustError::Unknown {
                provider: provider.into(),
                id: id.into(),
            })?;
        let age_days = (now_unix / 86_400) as i64 - anchor.reviewed_day;
        if age_days > anchor.max_age_days {
            return Err(TrustError::Stale {
                id: id.into(),
                reviewed: clock::format_date(anchor.reviewed_day),
                age_days,
                max_age_days: anchor.max_age_days,
            });
        }
        Ok(age_days.max(0))
    }

    /// Anchors that stop authenticating within `within_days` of `now_unix`
    /// (or already have): `(anchor, days left)`, for `intentgate check`.
    pub fn expiring(&self, now_unix: u64, within_days: i64) -> Vec<(&TrustAnchor, i64)> {
        let today = (now_unix / 86_400) as i64;
        let mut out: Vec<_> = self
            .anchors
            .values()
            .map(|a| (a, a.reviewed_day + a.max_age_days - today))
            .filter(|(_, left)| *left <= within_days)
            .collect();
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors(reviewed: &str, max_age_days: i64) -> TrustAnchors {
        TrustAnchors::new([TrustAnchor {
            provider: "oidc".into(),
            id: "https://issuer".into(),
            reviewed_day: clock::parse_date(reviewed).unwrap(),
            max_age_days,
        }])
    }

    #[test]
    fn a_fresh_anchor_vouches_and_reports_its_age() {
        let now = (clock::parse_date("2026-11-27").unwrap() * 86_400) as u64 + 3600;
        assert_eq!(
            anchors("2026-11-20", 30).check("oidc", "https://issuer", now),
            Ok(7)
        );
    }

    #[test]
    fn a_stale_anchor_authenticates_no_one() {
        let now = (clock::parse_date("2026-11-27").unwrap() * 86_400) as u64;
        let err = anchors("2026-10-01", 30)
            .check("oidc", "https://issuer", now)
            .unwrap_err();
        assert!(
            matches!(err, TrustError::Stale { age_days: 57, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2026-10-01"));
    }

    #[test]
    fn unknown_anchors_and_other_providers_are_refused() {
        let set = anchors("2026-11-20", 30);
        assert!(matches!(
            set.check("oidc", "https://other", 0),
            Err(TrustError::Unknown { .. })
        ));
        assert!(matches!(
            set.check("aws", "https://issuer", 0),
            Err(TrustError::Unknown { .. })
        ));
    }
}
