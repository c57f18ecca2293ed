//! Step 4: `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`, UTC) must be within
//! `max_clock_skew_seconds` of now, either way. Checked here because STS
//! doubles (moto) do not, and so a stale token never reaches STS at all.

use crate::error::AuthFailure;

/// A parsed `X-Amz-Date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmzDate {
    /// Unix seconds.
    pub unix: u64,
    year: u64,
    month: u64,
    day: u64,
}

impl AmzDate {
    /// Parses `YYYYMMDDTHHMMSSZ`; `None` for anything else, including
    /// impossible dates and years before 1970.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u64> {
            let digits = b.get(range)?;
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(
                digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
            )
        };
        let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
        let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
        if year < 1970
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Self {
            unix: days * 86_400 + hour * 3600 + minute * 60 + second,
            year,
            month,
            day,
        })
    }

    /// `YYYYMMDD`, as in the credential scope.
    pub fn day(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// Checks that `date` is within `skew` seconds of `now`.
pub fn check_fresh(date: AmzDate, now: u64, skew: u64) -> Result<(), AuthFailure> {
    if now > date.unix && now - date.unix > skew {
        return Err(AuthFailure::Expired(format!(
            "the request was signed at {} ({} s ago, now {}); signatures older than {skew} s are refused",
            rfc3339(date.unix),
            now - date.unix,
            rfc3339(now)
        )));
    }
    if date.unix > now && date.unix - now > skew {
        return Err(AuthFailure::Expired(format!(
            "the request is dated {} ({} s in the future, now {}); at most {skew} s of clock skew is accepted",
            rfc3339(date.unix),
            date.unix - now,
            rfc3339(now)
        )));
    }
    Ok(())
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (the year is at least 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_year: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_year + before_month + day - 1
}

/// `YYYY-MM-DDTHH:MM:SSZ` for messages.
pub fn rfc3339(unix: u64) -> String {
    let mut days = unix / 86_400;
    let secs = unix % 86_400;
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}Z",
        days + 1,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates() {
        assert_eq!(AmzDate::parse("19700101T000000Z").unwrap().unix, 0);
        let d = AmzDate::parse("20231114T221320Z").unwrap();
        assert_eq!(d.unix, 1_700_000_000);
        assert_eq!(d.day(), "20231114");
        assert_eq!(
            AmzDate::parse("20240229T235959Z").unwrap().unix,
            1_709_251_199
        );
        for bad in [
            "20231114T221320",
            "2023-11-14T22:13:20Z",
            "20231114t221320Z",
            "20231314T221320Z",
            "20230229T000000Z",
            "20231131T000000Z",
            "20231114T241320Z",
            "20231114T226020Z",
            "19691231T235959Z",
            "2023111+T221320Z",
            "",
        ] {
            assert!(AmzDate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        for unix in [0u64, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let text = rfc3339(unix).replace(['-', ':'], "");
            assert_eq!(AmzDate::parse(&text).unwrap().unix, unix, "{text}");
        }
    }

    #[test]
    fn freshness_window() {
        let d = AmzDate::parse("20231114T221320Z").unwrap();
        let t = d.unix;
        assert!(check_fresh(d, t, 900).is_ok());
        assert!(check_fresh(d, t + 900, 900).is_ok());
        assert!(check_fresh(d, t - 900, 900).is_ok());
        assert_eq!(
            check_fresh(d, t + 901, 900).unwrap_err(),
            AuthFailure::Expired(
                "the request was signed at 2023-11-14T22:13:20Z (901 s ago, now 2023-11-14T22:28:21Z); \
                 signatures older than 900 s are refused"
                    .into()
            )
        );
        assert_eq!(
            check_fresh(d, t - 1000, 900).unwrap_err(),
            AuthFailure::Expired(
                "the request is dated 2023-11-14T22:13:20Z (1000 s in the future, now 2023-11-14T21:56:40Z); \
                 at most 900 s of clock skew is accepted"
                    .into()
            )
        );
    }
}
