//! A small, strict reader for the protobuf wire format.
//!
//! It reads one message level at a time (callers descend into the embedded
//! messages they need) and never allocates. Everything a conforming encoder
//! cannot produce, or a parser could read in more than one way, is an error:
//! truncated input, a varint longer than 10 bytes or past 64 bits, a tag past
//! 32 bits, field number 0 or above 2^29-1, the group wire types (3, 4) and
//! the undefined ones (6, 7), a length past the end of the message.

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (little-endian).
    Fixed64(u64),
    /// Wire type 2: strings, bytes, embedded messages, packed repeated.
    Bytes(&'a [u8]),
    /// Wire type 5 (little-endian).
    Fixed32(u32),
}

impl Value<'_> {
    /// The wire type's name, for error messages.
    pub fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "fixed64",
            Value::Bytes(_) => "length-delimited",
            Value::Fixed32(_) => "fixed32",
        }
    }
}

/// One field occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
}

/// A wire-format error; the text says what and at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

/// Reads a varint at `*pos`, advancing `*pos`.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(WireError(format!("truncated varint at byte {start}")));
        };
        *pos += 1;
        // The tenth byte may only carry bit 63, and must end the varint.
        if i == 9 && byte > 1 {
            return Err(too_long(start));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(too_long(start))
}

fn too_long(start: usize) -> WireError {
    WireError(format!(
        "varint at byte {start} is longer than 10 bytes or overflows 64 bits"
    ))
}

/// Iterates over the fields of one message. After the first error it yields
/// nothing more.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// The fields of the message `buf` (one level; embedded messages are
/// `Value::Bytes` to be read with another `fields` call).
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        failed: false,
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let tag = read_varint(self.buf, &mut self.pos)?;
        if tag > u64::from(u32::MAX) {
            return Err(WireError(format!("tag at byte {start} exceeds 32 bits")));
        }
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError(format!(
                "invalid field number {number} at byte {start}"
            )));
        }
        // Checked just above: `number` fits in 29 bits.
        let number = number as u32;
        let value = match tag & 7 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take_array::<8>(number)?)),
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let remaining = self.buf.len() - self.pos;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= remaining)
                    .ok_or_else(|| {
                        WireError(format!(
                            "field {number} at byte {start} claims {len} bytes but only {remaining} remain"
                        ))
                    })?;
                let bytes = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Value::Bytes(bytes)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take_array::<4>(number)?)),
            3 | 4 => {
                return Err(WireError(format!(
                    "field {number} at byte {start} uses a group wire type, which is not supported"
                )));
            }
            other => {
                return Err(WireError(format!(
                    "field {number} at byte {start} has invalid wire type {other}"
                )));
            }
        };
        Ok(Field { number, value })
    }

    fn take_array<const N: usize>(&mut self, number: u32) -> Result<[u8; N], WireError> {
        let bytes = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.get(..N))
            .ok_or_else(|| WireError(format!("field {number}: truncated fixed-width value")))?;
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field (wire type 2).
pub fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Result<Vec<Field<'_>>, WireError> {
        fields(buf).collect()
    }

    #[test]
    fn reads_every_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0x80, // 2: fixed64
            0x1a, 0x03, b'a', b'b', b'c', // 3: bytes
            0x25, 4, 3, 2, 1, // 4: fixed32
        ];
        assert_eq!(
            all(&buf).unwrap(),
            vec![
                Field {
                    number: 1,
                    value: Value::Varint(150)
                },
                Field {
                    number: 2,
                    value: Value::Fixed64(0x8000_0000_0000_0001)
                },
                Field {
                    number: 3,
                    value: Value::Bytes(b"abc")
                },
                Field {
                    number: 4,
                    value: Value::Fixed32(0x0102_0304)
                },
            ]
        );
        assert_eq!(all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn varint_limits() {
        // u64::MAX takes exactly 10 bytes, the last one being 0x01.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read_varint(&max, &mut 0).unwrap(), u64::MAX);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(
            read_varint(&over, &mut 0)
                .unwrap_err()
                .0
                .contains("overflows")
        );
        assert!(
            read_varint(&over, &mut 0)
                .unwrap_err()
                .0
                .contains("longer than 10 bytes")
        );
        let eleven = [
            0x80u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00,
        ];
        assert!(read_varint(&eleven, &mut 0).is_err());
        assert!(
            read_varint(&[0x80, 0x80], &mut 0)
                .unwrap_err()
                .0
                .contains("truncated")
        );
        // Non-minimal encodings are accepted, as every protobuf parser does.
        assert_eq!(read_varint(&[0x81, 0x80, 0x00], &mut 0).unwrap(), 1);
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(out, max);
    }

    #[test]
    fn rejects_bad_input() {
        for (buf, needle) in [
            (&[0x0a, 0x05, b'a'][..], "only 1 remain"),
            (&[0x0a][..], "truncated varint"),
            (&[0x0b][..], "group wire type"),
            (&[0x0c][..], "group wire type"),
            (&[0x0e, 0x00][..], "invalid wire type 6"),
            (&[0x0f, 0x00][..], "invalid wire type 7"),
            (&[0x02, 0x00][..], "invalid field number 0"),
            (&[0x09, 1, 2, 3][..], "truncated fixed-width"),
            (&[0x0d, 1, 2, 3][..], "truncated fixed-width"),
            (&[0x08][..], "truncated varint"),
            (&[0xf8, 0xff, 0xff, 0xff, 0x1f, 0x00][..], "exceeds 32 bits"),
            // Field number 2^29: its tag needs 33 bits.
            (&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00][..], "exceeds 32 bits"),
        ] {
            let err = all(buf).unwrap_err();
            assert!(err.0.contains(needle), "{buf:?}: {err:?}");
        }
        // The highest field number is fine.
        let top = [0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert_eq!(all(&top).unwrap()[0].number, (1 << 29) - 1);
        // A huge length does not overflow.
        let mut huge = vec![0x0a];
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(0x01);
        assert!(all(&huge).unwrap_err().0.contains("claims"));
    }

    #[test]
    fn stops_after_the_first_error() {
        let mut it = fields(&[0x08, 0x01, 0x0b, 0x08, 0x01]);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn put_bytes_round_trips() {
        let mut out = Vec::new();
        put_bytes(&mut out, 5, b"role");
        assert_eq!(out, [0x2a, 4, b'r', b'o', b'l', b'e']);
        assert_eq!(
            all(&out).unwrap(),
            vec![Field {
                number: 5,
                value: Value::Bytes(b"role")
            }]
        );
    }
}
