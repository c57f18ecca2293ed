//! gRPC over HTTP/2 details the proxy needs without decoding messages:
//! length-prefixed frames, `grpc-timeout`, status codes and
//! `grpc-message` encoding (gRPC's PROTOCOL-HTTP2.md).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// gRPC status codes the proxy produces or reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// The client cancelled.
    Cancelled = 1,
    /// Malformed request.
    InvalidArgument = 3,
    /// The deadline passed.
    DeadlineExceeded = 4,
    /// The named thing does not exist.
    NotFound = 5,
    /// The policies deny it.
    PermissionDenied = 7,
    /// A limit was hit.
    ResourceExhausted = 8,
    /// Not supported.
    Unimplemented = 12,
    /// The proxy failed.
    Internal = 13,
    /// Transient: upstream unreachable.
    Unavailable = 14,
    /// No or bad credential.
    Unauthenticated = 16,
}

/// Codes that Spanner's service config retries for replay-safe unary calls.
pub fn retryable(code: i32) -> bool {
    code == Code::Unavailable as i32 || code == Code::ResourceExhausted as i32
}

/// Why a request body is not one uncompressed gRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than the 5 header bytes, or fewer bytes than the header says.
    Truncated,
    /// More bytes after the first message (a second message).
    Trailing,
    /// The compressed flag is set; the connector cannot read compressed bytes.
    Compressed,
    /// The flag byte is neither 0 nor 1.
    BadFlag(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "the request body is not a complete gRPC message"),
            Self::Trailing => write!(
                f,
                "the request carries more than one message; these RPCs take exactly one"
            ),
            Self::Compressed => write!(
                f,
                "compressed request messages are not accepted; send them uncompressed"
            ),
            Self::BadFlag(b) => write!(f, "gRPC frame flag {b} is not 0 or 1"),
        }
    }
}

/// The one message of a unary-request body (the frame header removed).
///
/// # Errors
/// When the body is not exactly one uncompressed message.
pub fn single_message(body: &Bytes) -> Result<Bytes, FrameError> {
    let header = body.get(..5).ok_or(FrameError::Truncated)?;
    match header[0] {
        0 => {}
        1 => return Err(FrameError::Compressed),
        b => return Err(FrameError::BadFlag(b)),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let end = 5usize.checked_add(len).ok_or(FrameError::Truncated)?;
    match body.len().cmp(&end) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated),
        std::cmp::Ordering::Greater => Err(FrameError::Trailing),
        std::cmp::Ordering::Equal => Ok(body.slice(5..end)),
    }
}

/// Frames `message` followed by `appended` as one uncompressed message.
pub fn frame(message: &[u8], appended: &[u8]) -> Bytes {
    let len = message.len() + appended.len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    out.put_slice(message);
    out.put_slice(appended);
    out.freeze()
}

/// Parses `grpc-timeout` (`<1..8 digits><H|M|S|m|u|n>`).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as `grpc-timeout`, in the finest unit that fits in 8
/// digits (rounded up, so the upstream never gets less than what is left).
pub fn format_timeout(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
    ] {
        let n = nanos.div_ceil(per);
        if n < 100_000_000 {
            return format!("{n}{unit}");
        }
    }
    format!("{}H", nanos.div_ceil(3_600_000_000_000).min(99_999_999))
}

/// Percent-encodes a `grpc-message` value.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded `grpc-message` (invalid escapes kept as is).
pub fn decode_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(text, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(value[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_exactly() {
        let framed = frame(b"abc", b"de");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(single_message(&framed).ok().as_deref(), Some(&b"abcde"[..]));
        assert_eq!(
            single_message(&Bytes::from_static(&[0, 0, 0])),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            single_message(&Bytes::from_static(&[0, 0, 0, 0, 2, 1])),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            single_message(&Bytes::from_static(&[0, 0, 0, 0, 1, 1, 0])),
            Err(FrameError::Trailing)
        );
        assert_eq!(
            single_message(&Bytes::from_static(&[1, 0, 0, 0, 0])),
            Err(FrameError::Compressed)
        );
        assert_eq!(
            single_message(&Bytes::from_static(&[7, 0, 0, 0, 0])),
            Err(FrameError::BadFlag(7))
        );
        assert_eq!(
            single_message(&Bytes::from_static(&[0, 0, 0, 0, 0])).ok(),
            Some(Bytes::new())
        );
    }

    #[test]
    fn timeouts_round_trip_and_never_shrink() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("5"), None);
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("1x"), None);
        assert_eq!(parse_timeout(""), None);
        assert_eq!(format_timeout(Duration::from_millis(1500)), "1500000u");
        assert_eq!(format_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(format_timeout(Duration::from_secs(3600)), "3600000m");
        for d in [
            Duration::from_nanos(123_456_789_123),
            Duration::from_secs(86_400 * 400),
        ] {
            let back = parse_timeout(&format_timeout(d)).unwrap_or_default();
            assert!(back >= d, "{d:?} -> {back:?}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        let text = "denied: 100% \"x\"\nnext ü";
        let encoded = encode_message(text);
        assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(decode_message(encoded.as_bytes()), text);
    }
}
