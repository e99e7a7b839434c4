//! Secrets at rest (SPEC §10): webhook signing secrets are sealed with the operator's key
//! (XChaCha20-Poly1305), and `client_token`s are derived from it so that only their hash is
//! stored.
//!
//! A sealed value is self-describing text that fits the existing column:
//! `sealed:v1:<key id>:<base64(nonce ‖ ciphertext)>`. The key id (a short hash of the key)
//! says which key sealed it, so a rotation can keep accepting the previous key while the
//! rows are re-sealed (`reseal` in `crate::db::secrets`). The associated data names the row
//! the value belongs to, so a sealed secret copied into another row does not open.
mod keyfile;

pub use keyfile::{load, SecretsConfig};

use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// One 32-byte key. No Debug and no Display: nothing can print it by accident.
#[derive(Clone)]
pub struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
    /// Separate from the cipher key: a client token is an HMAC, never a ciphertext.
    token_key: [u8; 32],
}

impl Key {
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        // 8 hex digits name a key without revealing anything usable about it.
        let id = hex::encode(&Sha256::digest([b"checkout key id:", &bytes[..]].concat())[..4]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("any key length");
        mac.update(b"checkout client_token v1");
        Key {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
            token_key: mac.finalize().into_bytes().into(),
        }
    }

    /// The key as an operator writes it: base64 (standard or URL-safe) or hex of 32 bytes.
    pub fn parse(text: &str, what: &str) -> anyhow::Result<Key> {
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        let text = text.trim();
        let decodings = [
            STANDARD.decode(text).ok(),
            URL_SAFE.decode(text).ok(),
            URL_SAFE_NO_PAD.decode(text).ok(),
            hex::decode(text).ok(),
        ];
        // The message never quotes the value: it is a secret, however malformed.
        let bytes: [u8; 32] = decodings
            .into_iter()
            .flatten()
            .find_map(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("{what} must be 32 bytes, base64 or hex encoded (e.g. `openssl rand -base64 32`)"))?;
        Ok(Key::from_bytes(&bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client token of a session under this key: `ct_` + 43 base62 characters of
    /// HMAC-SHA512(token key, session id) (each character from one byte mod 62: a keyed PRF's
    /// output, so the slight bias leaves ~256 bits).
    fn client_token(&self, session_id: &str) -> String {
        let mut mac =
            <Hmac<sha2::Sha512> as Mac>::new_from_slice(&self.token_key).expect("any length");
        mac.update(session_id.as_bytes());
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let out = mac.finalize().into_bytes();
        let body: String = out[..43]
            .iter()
            .map(|b| ALPHABET[(*b % 62) as usize] as char)
            .collect();
        format!("ct_{body}")
    }
}

/// Why a stored secret did not open. The messages name key ids and rows, never a value.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("sealed under key id {0}, which is neither CHECKOUT_SECRETS_KEY nor one of CHECKOUT_SECRETS_OLD_KEYS")]
    UnknownKey(String),
    #[error("the sealed value does not authenticate under key id {0} (altered, or copied from another row)")]
    Rejected(String),
    #[error("the sealed value is malformed")]
    Malformed,
}

/// The current key (seals and derives) and older keys (still open and verify).
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl Keyring {
    pub fn new(current: Key, old: Vec<Key>) -> Keyring {
        Keyring { current, old }
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.old)
    }

    /// Seals `plaintext` for the row named by `row` with a fresh random 24-byte nonce
    /// (XChaCha's nonce is long enough that random nonces never repeat in practice).
    pub fn seal(&self, plaintext: &str, row: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: row.as_bytes(),
        };
        let ciphertext = self
            .current
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(blob))
    }

    /// The plaintext of a stored value. A value that is not sealed is returned as it is: a
    /// row written by an older version, until the next start re-seals it.
    pub fn open(&self, stored: &str, row: &str) -> Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let key = self
            .keys()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(body).map_err(|_| OpenError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: row.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::Rejected(id.to_owned()))?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }

    /// Whether a stored value is anything but sealed under the current key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        !stored.starts_with(&format!("{PREFIX}{}:", self.current.id))
    }

    /// The client token the current key derives for a session.
    pub fn current_client_token(&self, session_id: &str) -> String {
        self.current.client_token(session_id)
    }

    /// The hash stored for a new session's client token.
    pub fn client_token_hash(&self, session_id: &str) -> String {
        client_token_hash(&self.current.client_token(session_id))
    }

    /// The client token of a stored session: the one whose hash is stored, derived again
    /// under whichever key made it, so an idempotent replay returns the very same token.
    /// `None` if no key makes it (a token from before tokens were derived, or one whose key
    /// was dropped from the keyring).
    pub fn client_token(&self, session_id: &str, stored_hash: &str) -> Option<String> {
        self.keys()
            .map(|k| k.client_token(session_id))
            .find(|t| crate::domain::store::secrets_match(&client_token_hash(t), stored_hash))
    }
}

/// What is stored of a client token: its SHA-256 (hex), as for API keys. A fast hash is
/// right for 256 random bits.
pub fn client_token_hash(token: &str) -> String {
    crate::domain::store::hash_secret(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(Key::from_bytes(&[byte; 32]), vec![])
    }

    #[test]
    fn sealed_values_open_only_for_their_row_and_key() {
        let a = ring(1);
        let sealed = a.seal("whsec_abc", "we_1");
        assert!(sealed.starts_with(&format!("sealed:v1:{}:", a.current_id())));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(a.open(&sealed, "we_1").unwrap(), "whsec_abc");
        assert!(matches!(
            a.open(&sealed, "we_2"),
            Err(OpenError::Rejected(_))
        ));
        assert!(matches!(
            ring(2).open(&sealed, "we_1"),
            Err(OpenError::UnknownKey(_))
        ));
        assert_ne!(
            a.seal("whsec_abc", "we_1"),
            sealed,
            "a fresh nonce per seal"
        );
        let rotated = Keyring::new(Key::from_bytes(&[2; 32]), vec![Key::from_bytes(&[1; 32])]);
        assert_eq!(rotated.open(&sealed, "we_1").unwrap(), "whsec_abc");
        assert!(rotated.needs_reseal(&sealed) && !a.needs_reseal(&sealed));
        assert!(a.needs_reseal("whsec_plain"));
    }

    #[test]
    fn client_tokens_are_reproducible_from_their_hash() {
        let a = ring(1);
        let hash = a.client_token_hash("cs_1");
        let token = a.client_token("cs_1", &hash).unwrap();
        assert!(token.starts_with("ct_") && token.len() == 46, "{token}");
        assert_eq!(client_token_hash(&token), hash);
        assert!(a.client_token("cs_2", &hash).is_none());
        let rotated = Keyring::new(Key::from_bytes(&[2; 32]), vec![Key::from_bytes(&[1; 32])]);
        assert_eq!(rotated.client_token("cs_1", &hash).unwrap(), token);
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_errors_quote_nothing() {
        let b64 = STANDARD.encode([7u8; 32]);
        let hex = hex::encode([7u8; 32]);
        assert_eq!(
            Key::parse(&b64, "K").unwrap().id(),
            Key::parse(&hex, "K").unwrap().id()
        );
        let err = Key::parse("not-a-key-but-secret", "CHECKOUT_SECRETS_KEY")
            .err()
            .unwrap();
        assert!(!err.to_string().contains("not-a-key-but-secret"));
    }
}
