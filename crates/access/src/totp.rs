//! Time-based one-time passwords, RFC 6238 (over RFC 4226 HOTP), with HMAC-SHA1, -SHA256 and
//! -SHA512, and the base32 secret encoding authenticator apps read from `otpauth://` URIs.
//!
//! Verification accepts the current 30-second step and one step either side; the caller
//! remembers the last accepted step so a code is accepted once ([`verify`] returns the step).

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq as _;

/// The HMAC behind a TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1: the default, and the only one most authenticator apps honour.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl TotpAlgorithm {
    /// Name in `otpauth://` URIs and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses [`TotpAlgorithm::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            // HOTP's use of SHA-1 is as a MAC, which does not rely on collision resistance.
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// Step length in seconds (RFC 6238's default X = 30).
pub const STEP_SECS: i64 = 30;
/// Digits of the codes this gateway issues.
pub const DIGITS: u32 = 6;

/// HOTP (RFC 4226 §5.3) value of `counter` with `digits` digits, zero-padded.
pub fn hotp(secret: &[u8], counter: u64, digits: u32, alg: TotpAlgorithm) -> String {
    let key = hmac::Key::new(alg.hmac(), secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    let modulus = 10u64.pow(digits.min(9));
    format!(
        "{:0width$}",
        u64::from(binary) % modulus,
        width = digits.min(9) as usize
    )
}

/// The time step containing `unix_time`.
pub fn step_at(unix_time: i64) -> i64 {
    unix_time.div_euclid(STEP_SECS)
}

/// TOTP (RFC 6238) code at `unix_time`.
pub fn totp(secret: &[u8], unix_time: i64, digits: u32, alg: TotpAlgorithm) -> String {
    hotp(secret, step_at(unix_time).max(0) as u64, digits, alg)
}

/// Checks `code` against the steps `now - 1 ..= now + 1` in constant time per step, and
/// returns the matching step, if any. The caller must refuse a step not greater than the last
/// one accepted (replay).
pub fn verify(secret: &[u8], code: &str, unix_time: i64, alg: TotpAlgorithm) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_time);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        if step < 0 {
            continue;
        }
        let expected = hotp(secret, step as u64, DIGITS, alg);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (the form `otpauth://` URIs use).
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for c in text.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let upper = c.to_ascii_uppercase();
        let v = BASE32.iter().position(|&x| x == upper)? as u64;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B, every row.
    #[test]
    fn rfc6238_appendix_b_test_vectors() {
        let rows: &[(i64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(t, sha1, sha256, sha512) in rows {
            assert_eq!(
                totp(SEED_SHA1, t, 8, TotpAlgorithm::Sha1),
                sha1,
                "SHA1 at {t}"
            );
            assert_eq!(
                totp(SEED_SHA256, t, 8, TotpAlgorithm::Sha256),
                sha256,
                "SHA256 at {t}"
            );
            assert_eq!(
                totp(SEED_SHA512, t, 8, TotpAlgorithm::Sha512),
                sha512,
                "SHA512 at {t}"
            );
        }
    }

    /// RFC 4226 Appendix D HOTP values (6 digits) for counters 0..=9.
    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                hotp(SEED_SHA1, counter as u64, 6, TotpAlgorithm::Sha1),
                *code
            );
        }
    }

    #[test]
    fn verify_accepts_one_step_either_side_and_nothing_further() {
        let t = 1_700_000_000;
        for (offset, accepted) in [
            (-60, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let code = totp(SEED_SHA1, t + offset, 6, TotpAlgorithm::Sha1);
            assert_eq!(
                verify(SEED_SHA1, &code, t, TotpAlgorithm::Sha1).is_some(),
                accepted,
                "offset {offset}"
            );
        }
        let code = totp(SEED_SHA1, t, 6, TotpAlgorithm::Sha1);
        assert_eq!(
            verify(SEED_SHA1, &code, t, TotpAlgorithm::Sha1),
            Some(step_at(t))
        );
        assert_eq!(verify(SEED_SHA1, "12345", t, TotpAlgorithm::Sha1), None);
        assert_eq!(verify(SEED_SHA1, "abcdef", t, TotpAlgorithm::Sha1), None);
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
        }
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn verify_never_panics(code in ".{0,12}", t in -100i64..4_000_000_000) {
            let _ = verify(SEED_SHA1, &code, t, TotpAlgorithm::Sha1);
        }
    }
}
