//! Just enough DER to read a certificate's issuer and validity (for `phigate doctor` and for
//! renewing the development certificates). Bounded and panic-free on any input.
use chrono::{DateTime, NaiveDateTime, Utc};

/// Issuer and validity of a certificate.
pub struct Info<'a> {
    /// The issuer name, DER.
    pub issuer: &'a [u8],
    /// Not valid before.
    pub not_before: DateTime<Utc>,
    /// Not valid after.
    pub not_after: DateTime<Utc>,
}

/// One TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn time(tag: u8, body: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(body).ok()?;
    let naive = match tag {
        0x17 => NaiveDateTime::parse_from_str(text, "%y%m%d%H%M%SZ").ok()?,
        0x18 => NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%SZ").ok()?,
        _ => return None,
    };
    Some(naive.and_utc())
}

/// Reads a DER certificate; `None` when it is not one.
pub fn parse(der: &[u8]) -> Option<Info<'_>> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        let (_, _, r) = tlv(rest)?; // serial
        rest = r;
    }
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (0x30, issuer, rest) = tlv(rest)? else {
        return None;
    };
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (t1, nb, r) = tlv(validity)?;
    let (t2, na, _) = tlv(r)?;
    Some(Info {
        issuer,
        not_before: time(t1, nb)?,
        not_after: time(t2, na)?,
    })
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_issuer_and_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example Issuing CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = super::parse(cert.der()).unwrap();
        assert_eq!(info.not_before.to_rfc3339(), "2026-01-02T00:00:00+00:00");
        assert_eq!(info.not_after.to_rfc3339(), "2051-03-04T00:00:00+00:00");
        assert!(super::contains(info.issuer, b"Example Issuing CA"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_certificate_reader(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = super::parse(&bytes);
        }
    }

    #[test]
    fn malformed_input_gives_none_without_panicking() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert!(super::parse(input).is_none());
        }
    }
}
