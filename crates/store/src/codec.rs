//! Plaintext layout inside a sealed record, and the backup record stream. Both are private to
//! this crate and versioned by their first byte.

use crate::error::{Result, StoreError};

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        let (b, rest) = self
            .0
            .split_first()
            .ok_or(StoreError::Corrupt("record ends early"))?;
        self.0 = rest;
        Ok(*b)
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        let bytes = self.take(8)?;
        Ok(i64::from_be_bytes(
            bytes
                .try_into()
                .map_err(|_| StoreError::Corrupt("integer"))?,
        ))
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("record ends early"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn field(&mut self) -> Result<&'a [u8]> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| StoreError::Corrupt("length"))?);
        self.take(usize::try_from(len).map_err(|_| StoreError::Corrupt("length"))?)
    }
    pub(crate) fn string(&mut self) -> Result<String> {
        String::from_utf8(self.field()?.to_vec())
            .map_err(|_| StoreError::Corrupt("text is not UTF-8"))
    }
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8]) -> Result<()> {
    let len = u32::try_from(field.len())
        .map_err(|_| StoreError::InvalidArgument("field larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

const PAYLOAD_V1: u8 = 1;

/// `0x01 | field(id) | 0/1 | [field(patient)] | value`
pub(crate) fn encode_payload(id: &str, patient: Option<&str>, value: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len() + id.len() + 16);
    out.push(PAYLOAD_V1);
    push_field(&mut out, id.as_bytes())?;
    match patient {
        Some(p) => {
            out.push(1);
            push_field(&mut out, p.as_bytes())?;
        }
        None => out.push(0),
    }
    out.extend_from_slice(value);
    Ok(out)
}

pub(crate) struct Payload {
    pub id: String,
    pub patient: Option<String>,
    pub value: Vec<u8>,
}

pub(crate) fn decode_payload(bytes: &[u8]) -> Result<Payload> {
    let mut r = Reader::new(bytes);
    if r.u8()? != PAYLOAD_V1 {
        return Err(StoreError::Corrupt("unknown record payload version"));
    }
    let id = r.string()?;
    let patient = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return Err(StoreError::Corrupt("bad patient flag")),
    };
    Ok(Payload {
        id,
        patient,
        value: r.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn payload_round_trips(id in ".{0,64}", patient in proptest::option::of(".{0,32}"), value in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let bytes = encode_payload(&id, patient.as_deref(), &value).unwrap();
            let back = decode_payload(&bytes).unwrap();
            prop_assert_eq!(back.id, id);
            prop_assert_eq!(back.patient, patient);
            prop_assert_eq!(back.value, value);
        }

        #[test]
        fn arbitrary_payload_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload(&bytes);
        }
    }
}
