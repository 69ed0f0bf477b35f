//! TOTP (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits, one step of
//! clock drift either way. Pure functions; the store keeps the sealed
//! secret and the last used step per user (so a code is used once).

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per time step.
pub const STEP_SECONDS: u64 = 30;
/// Steps of clock drift accepted either way.
pub const DRIFT_STEPS: u64 = 1;
/// Secret length in bytes (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

/// The time step of a Unix time in seconds.
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The 6-digit code of a secret at a time step (RFC 4226 truncation).
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 1_000_000
}

/// The code as the user types it: six digits.
pub fn format_code(code: u32) -> String {
    format!("{code:06}")
}

/// The step a code matches at `unix_seconds`, within the drift. Spaces in
/// the code are ignored ("123 456"); anything but six digits matches none.
/// Compared in constant time per candidate.
pub fn verify(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(unix_seconds);
    let mut found = None;
    for step in now.saturating_sub(DRIFT_STEPS)..=now + DRIFT_STEPS {
        let expected = format_code(code_at(secret, step));
        if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), digits.as_bytes()).into() {
            found = Some(step);
        }
    }
    found
}

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    rand::random()
}

/// The secret as authenticator apps take it: base32 without padding.
pub fn secret_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI for an authenticator app (the QR code's content).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let esc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
        esc(issuer),
        esc(account),
        secret_base32(secret),
        esc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8-digit values; the last 6 digits are
    /// the 6-digit code).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(
                code_at(secret, step_of(time)),
                expected % 1_000_000,
                "{time}"
            );
        }
    }

    #[test]
    fn one_step_of_drift_either_way_and_nothing_more() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let step = step_of(now);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = format_code(code_at(secret, (step as i64 + offset) as u64));
            assert_eq!(verify(secret, &code, now).is_some(), ok, "offset {offset}");
        }
        let code = format_code(code_at(secret, step));
        assert_eq!(verify(secret, &code, now), Some(step));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(secret, &spaced, now), Some(step));
        for bad in ["", "12345", "1234567", "abcdef", "12345x"] {
            assert_eq!(verify(secret, bad, now), None, "{bad}");
        }
    }

    #[test]
    fn the_uri_carries_the_base32_secret() {
        let uri = otpauth_uri("schoolfleet", "tina technik", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/schoolfleet:tina%20technik?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=schoolfleet&algorithm=SHA1&digits=6&period=30"
        );
    }
}
