//! Text formats of the two kinds of token.
//!
//! - API token of an admin: `sft_<id>_<secret>`.
//! - Enrolment token: `sfe_<id>_<secret>_<ca-pin>`. It carries the SHA-256
//!   fingerprint of the server CA, so the agent pins the server on first
//!   contact and never trusts an unknown CA (like kubeadm's discovery hash).
//!
//! `<id>` is 16 hex digits (the lookup key), `<secret>` 48 hex digits (192
//! random bits; the server stores only its SHA-256), `<ca-pin>` 64 hex digits.

use std::fmt;

use crate::transport::Fingerprint;

pub const API_TOKEN_PREFIX: &str = "sft";
pub const ENROLLMENT_TOKEN_PREFIX: &str = "sfe";
pub const ID_HEX_LEN: usize = 16;
pub const SECRET_HEX_LEN: usize = 48;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFormatError {
    #[error("not a schoolfleet {0} token (expected {1}_...)")]
    WrongKind(&'static str, &'static str),
    #[error("malformed {0} token")]
    Malformed(&'static str),
}

/// A parsed token: the id is public, the secret is not.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenParts {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for TokenParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParts")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub fn parse_api_token(text: &str) -> Result<TokenParts, TokenFormatError> {
    let rest = text
        .trim()
        .strip_prefix("sft_")
        .ok_or(TokenFormatError::WrongKind("API", API_TOKEN_PREFIX))?;
    match rest.split('_').collect::<Vec<_>>()[..] {
        [id, secret] if is_hex(id, ID_HEX_LEN) && is_hex(secret, SECRET_HEX_LEN) => {
            Ok(TokenParts {
                id: id.to_owned(),
                secret: secret.to_owned(),
            })
        }
        _ => Err(TokenFormatError::Malformed("API")),
    }
}

pub fn format_api_token(id: &str, secret: &str) -> String {
    format!("{API_TOKEN_PREFIX}_{id}_{secret}")
}

/// A parsed enrolment token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EnrollmentTokenParts {
    pub token: TokenParts,
    pub ca_pin: Fingerprint,
}

pub fn parse_enrollment_token(text: &str) -> Result<EnrollmentTokenParts, TokenFormatError> {
    let rest = text
        .trim()
        .strip_prefix("sfe_")
        .ok_or(TokenFormatError::WrongKind(
            "enrolment",
            ENROLLMENT_TOKEN_PREFIX,
        ))?;
    match rest.split('_').collect::<Vec<_>>()[..] {
        [id, secret, pin]
            if is_hex(id, ID_HEX_LEN) && is_hex(secret, SECRET_HEX_LEN) && is_hex(pin, 64) =>
        {
            let mut ca_pin = [0u8; 32];
            hex::decode_to_slice(pin, &mut ca_pin)
                .map_err(|_| TokenFormatError::Malformed("enrolment"))?;
            Ok(EnrollmentTokenParts {
                token: TokenParts {
                    id: id.to_owned(),
                    secret: secret.to_owned(),
                },
                ca_pin,
            })
        }
        _ => Err(TokenFormatError::Malformed("enrolment")),
    }
}

pub fn format_enrollment_token(id: &str, secret: &str, ca_pin: &Fingerprint) -> String {
    format!(
        "{ENROLLMENT_TOKEN_PREFIX}_{id}_{secret}_{}",
        hex::encode(ca_pin)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef";
    const SECRET: &str = "00112233445566778899aabbccddeeff0011223344556677";

    #[test]
    fn api_token_roundtrip() {
        let text = format_api_token(ID, SECRET);
        let parts = parse_api_token(&text).unwrap();
        assert_eq!((parts.id.as_str(), parts.secret.as_str()), (ID, SECRET));
        assert!(!format!("{parts:?}").contains(SECRET));
    }

    #[test]
    fn enrollment_token_roundtrip_carries_pin() {
        let pin = [7u8; 32];
        let text = format_enrollment_token(ID, SECRET, &pin);
        let parts = parse_enrollment_token(&text).unwrap();
        assert_eq!(parts.ca_pin, pin);
        assert_eq!(parts.token.id, ID);
    }

    #[test]
    fn rejects_malformed_tokens() {
        let pin = hex::encode([1u8; 32]);
        for bad in [
            "".to_owned(),
            format!("sft_{ID}"),
            format!("sft_{ID}_{SECRET}_x"),
            format!("sft_{}_{SECRET}", ID.to_uppercase()),
            format!("sfe_{ID}_{SECRET}"),
            format!("sfe_{ID}_{SECRET}_{}", &pin[..60]),
            format!("sft_{ID}_{SECRET}").replace("sft", "sfe"),
        ] {
            assert!(
                parse_api_token(&bad).is_err() || parse_enrollment_token(&bad).is_err(),
                "{bad} accepted"
            );
        }
        assert_eq!(
            parse_api_token(&format_enrollment_token(ID, SECRET, &[0; 32])),
            Err(TokenFormatError::WrongKind("API", "sft"))
        );
    }
}
