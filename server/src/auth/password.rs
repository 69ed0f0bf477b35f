//! Web passwords: argon2id (RustCrypto `argon2`, its default parameters:
//! 19 MiB, 2 passes, 1 lane, as OWASP recommends), PHC strings at rest.
//! Human-chosen secrets, unlike API tokens, need a slow hash.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest web password accepted.
pub const MIN_LEN: usize = 12;
/// Longest accepted: hashing cost must not be chosen by the caller.
pub const MAX_LEN: usize = 256;

/// A refusal in German would go to the portal; the CLI is English.
pub fn check_strength(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!("the password needs at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("the password may have at most {MAX_LEN} bytes"));
    }
    if password.chars().any(char::is_control) {
        return Err("the password contains control characters".into());
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$...`) of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// True when `password` matches the stored PHC string. A malformed stored
/// value matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    password.len() <= MAX_LEN
        && Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
}

/// A fixed hash to verify against when the user or the password is
/// unknown, so that the answer takes as long as for a known user.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("schoolfleet-dummy-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("richtig-langes-passwort").unwrap();
        let b = hash("richtig-langes-passwort").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify("richtig-langes-passwort", &a));
        assert!(!verify("falsches-langes-passwort", &a));
        assert!(!verify("richtig-langes-passwort", "not a phc string"));
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_strength("kurz").is_err());
        assert!(check_strength("zwölf zeichen").is_ok());
        assert!(check_strength(&"x".repeat(300)).is_err());
        assert!(check_strength("mit\nzeilenumbruch").is_err());
    }
}
