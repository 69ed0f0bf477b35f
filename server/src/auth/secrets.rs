//! Generation and hashing of token secrets.
//!
//! Secrets are 192 random bits, so a single SHA-256 is enough to store them
//! safely: there is nothing to brute-force that a slow password hash would
//! protect (unlike human-chosen passwords).

use rand::RngCore;
use sha2::{Digest, Sha256};

use schoolfleet_proto::tokens::{ID_HEX_LEN, SECRET_HEX_LEN};

/// A new (id, secret) pair in the token alphabet.
pub fn generate() -> (String, String) {
    let mut id = [0u8; ID_HEX_LEN / 2];
    let mut secret = [0u8; SECRET_HEX_LEN / 2];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    (hex::encode(id), hex::encode(secret))
}

/// Hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_unique_and_well_formed() {
        let (id1, s1) = generate();
        let (id2, s2) = generate();
        assert_ne!((&id1, &s1), (&id2, &s2));
        let token = schoolfleet_proto::tokens::format_api_token(&id1, &s1);
        assert!(schoolfleet_proto::tokens::parse_api_token(&token).is_ok());
        assert_ne!(hash_secret(&s1), s1);
    }
}
