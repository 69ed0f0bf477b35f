//! Data keys for secrets and recordings at rest, kept outside the database.
//!
//! The key file (`sessions.data_key_file`, default `data.keys` in the data
//! directory, mode 0600) holds one key per line, `<id> <64 hex digits>`.
//! The LAST line is the current key: new data is sealed with it. Earlier
//! lines only open older data, so a key is rotated by appending a line
//! (`schoolfleet-server rotate-data-key` is not needed: any editor does);
//! a key may be removed once nothing sealed with it is kept any more.
//!
//! A sealed blob names its key: `SFE1 | id length | id | nonce (24) |
//! ciphertext + tag` (XChaCha20-Poly1305). The caller binds each blob to
//! its place with associated data (the recording's session and chunk, the
//! user of a TOTP secret), so a blob copied into another row does not open.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const MAGIC: &[u8; 4] = b"SFE1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("key file {0}, line {1}: {2}")]
    Format(String, usize, &'static str),
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed with key {0:?}, which is not in the key file")]
    UnknownKey(String),
    #[error("sealed data does not open with key {0:?} (changed, or moved to another row)")]
    Tampered(String),
}

/// The data keys; `Debug` names the key ids, never the keys.
pub struct Keyring {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Parses the key file's text.
    pub fn parse(source: &str, text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why| KeyringError::Format(source.to_owned(), n + 1, why);
            let (id, hex_key) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `<id> <64 hex digits>`"))?;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad("key id: 1 to 32 letters, digits or '-'"));
            }
            let key = hex::decode(hex_key.trim()).map_err(|_| bad("key is not hex"))?;
            if key.len() != 32 {
                return Err(bad("key must be 32 bytes (64 hex digits)"));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(bad("key id used twice"));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| bad("key"))?;
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(KeyringError::Format(source.to_owned(), 0, "no key"));
        }
        Ok(Keyring { keys })
    }

    /// Reads the key file, or creates it (mode 0600) with one new key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyringError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&name, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = format!("k{}", hex::encode(rand::random::<[u8; 4]>()));
                let key: [u8; 32] = rand::random();
                let text = format!(
                    "# schoolfleet data keys: `<id> <key>`; the last line seals new data.\n\
                     {id} {}\n",
                    hex::encode(key)
                );
                match schoolfleet_proto::files::write_durably(
                    path,
                    text.as_bytes(),
                    0o600,
                    schoolfleet_proto::files::Existing::Keep,
                ) {
                    Ok(()) => Self::parse(&name, &text),
                    // Another replica created it a moment ago: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(KeyringError::File(name, e)),
                }
            }
            Err(e) => Err(KeyringError::File(name, e)),
        }
    }

    /// The id of the key that seals new data.
    pub fn current_id(&self) -> &str {
        &self.keys.last().expect("at least one key").0
    }

    /// Encrypts `plain` with the current key, bound to `context`.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        let (id, cipher) = self.keys.last().expect("at least one key");
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length we store");
        let mut out = Vec::with_capacity(5 + id.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The key id a sealed blob names, if it is one.
    pub fn key_id_of(blob: &[u8]) -> Option<&str> {
        let rest = blob.strip_prefix(MAGIC)?;
        let (&len, rest) = rest.split_first()?;
        std::str::from_utf8(rest.get(..len as usize)?).ok()
    }

    /// Decrypts a blob made by [`Keyring::seal`] with the same `context`.
    pub fn open(&self, context: &[u8], blob: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let id = Self::key_id_of(blob).ok_or(KeyringError::Malformed)?;
        let rest = &blob[MAGIC.len() + 1 + id.len()..];
        if rest.len() < NONCE_LEN + 16 {
            return Err(KeyringError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, c)| c)
            .ok_or_else(|| KeyringError::UnknownKey(id.to_owned()))?;
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| KeyringError::Tampered(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "k1 0000000000000000000000000000000000000000000000000000000000000001\n";
    const TWO: &str = "k2 0000000000000000000000000000000000000000000000000000000000000002\n";

    #[test]
    fn seals_with_the_last_key_and_opens_with_any() {
        let old = Keyring::parse("t", ONE).unwrap();
        let blob = old.seal(b"ctx", b"geheim");
        assert_eq!(Keyring::key_id_of(&blob), Some("k1"));
        assert!(!blob.windows(6).any(|w| w == b"geheim"));
        let rotated = Keyring::parse("t", &format!("{ONE}{TWO}")).unwrap();
        assert_eq!(rotated.current_id(), "k2");
        assert_eq!(rotated.open(b"ctx", &blob).unwrap(), b"geheim");
        let new = rotated.seal(b"ctx", b"x");
        assert_eq!(Keyring::key_id_of(&new), Some("k2"));
        assert!(matches!(
            old.open(b"ctx", &new),
            Err(KeyringError::UnknownKey(_))
        ));
    }

    #[test]
    fn another_context_or_a_flipped_bit_does_not_open() {
        let ring = Keyring::parse("t", ONE).unwrap();
        let mut blob = ring.seal(b"recording:s1:0", b"data");
        assert!(matches!(
            ring.open(b"recording:s2:0", &blob),
            Err(KeyringError::Tampered(_))
        ));
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert!(ring.open(b"recording:s1:0", &blob).is_err());
        assert!(matches!(
            ring.open(b"", b"plain"),
            Err(KeyringError::Malformed)
        ));
    }

    #[test]
    fn bad_key_files_are_refused() {
        for text in ["", "k1 abcd\n", "k1\n", "k/1 00\n", &format!("{ONE}{ONE}")] {
            assert!(Keyring::parse("t", text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_new_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.keys");
        let first = Keyring::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(first.current_id(), again.current_id());
        let blob = first.seal(b"c", b"v");
        assert_eq!(again.open(b"c", &blob).unwrap(), b"v");
    }
}
