//! Data keys and their passphrase-wrapped form (Argon2id + AES-256-GCM).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// Length of a data key in bytes.
const KEY_LEN: usize = 32;
/// Length of the Argon2 salt of a wrapped key.
const SALT_LEN: usize = 16;
/// Length of the AES-GCM nonce of a wrapped key.
const NONCE_LEN: usize = 12;
/// Length of the AES-GCM authentication tag.
const TAG_LEN: usize = 16;

/// The only key-derivation function name accepted in a [`WrappedKey`].
const KDF_ARGON2ID: &str = "argon2id";
/// Argon2id memory cost (KiB) of new wrapped keys: OWASP's minimum recommendation.
const DEFAULT_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id iterations of new wrapped keys.
const DEFAULT_T_COST: u32 = 2;
/// Argon2id parallelism of new wrapped keys.
const DEFAULT_P_COST: u32 = 1;

/// Upper bounds accepted when unwrapping, so a hostile info file cannot make us allocate
/// or compute without limit.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

/// Associated data of the key-wrapping AES-GCM seal (domain separation).
const WRAP_AAD: &[u8] = b"pgbr-crypto wrapped data key v1";

/// Fill `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Random(e.to_string()))
}

/// A 256-bit data key: the key that encrypts a repository's files.
///
/// The bytes are zeroized when the value is dropped, and `Debug` prints `DataKey(..)` only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    bytes: [u8; KEY_LEN],
}

impl DataKey {
    /// A new random key from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// Only if the operating system cannot provide random bytes.
    pub fn generate() -> DataKey {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        DataKey { bytes }
    }

    /// A key from its raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> DataKey {
        DataKey { bytes: b }
    }

    /// The raw key bytes. Handle with care: never log them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The OpenSSL passphrase used for AES-256-CBC: the key's lowercase hex string (64 ASCII bytes).
    pub(crate) fn cbc_passphrase(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; KEY_LEN * 2]);
        // Cannot fail: the output buffer has exactly twice the input length.
        if hex::encode_to_slice(self.bytes, &mut out[..]).is_err() {
            out.clear();
        }
        out
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A [`DataKey`] sealed under a key derived from a passphrase, as stored in a stanza's info file.
///
/// The key-encryption key is Argon2id(passphrase, salt) with the recorded costs; the data key is
/// sealed with AES-256-GCM under it. All binary fields are lowercase hex.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// Key-derivation function; always `"argon2id"`.
    pub kdf: String,
    /// Argon2 memory cost in KiB.
    pub m_cost_kib: u32,
    /// Argon2 number of iterations.
    pub t_cost: u32,
    /// Argon2 degree of parallelism.
    pub p_cost: u32,
    /// Argon2 salt (hex).
    pub salt: String,
    /// AES-GCM nonce (hex).
    pub nonce: String,
    /// AES-256-GCM ciphertext of the data key under the key-encryption key, tag included (hex).
    pub ciphertext: String,
}

/// Argon2id key-encryption key for the given passphrase, salt and costs.
fn derive_kek(
    passphrase: &[u8],
    salt: &[u8],
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let params = Params::new(m_cost_kib, t_cost, p_cost, Some(KEY_LEN))
        .map_err(|e| Error::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase, salt, &mut kek[..])
        .map_err(|e| Error::Kdf(e.to_string()))?;
    Ok(kek)
}

/// Decode one hex field of a wrapped key, checking its length.
fn decode_field(name: &str, value: &str, len: usize) -> Result<Vec<u8>, Error> {
    let bytes =
        hex::decode(value).map_err(|e| Error::MalformedKey(format!("field {name}: {e}")))?;
    if bytes.len() != len {
        return Err(Error::MalformedKey(format!(
            "field {name}: expected {len} bytes, found {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl WrappedKey {
    /// Wrap `key` under `passphrase`: random salt and nonce; Argon2id with m=19456 KiB, t=2, p=1.
    pub fn wrap(passphrase: &[u8], key: &DataKey) -> Result<WrappedKey, Error> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let kek = derive_kek(
            passphrase,
            &salt,
            DEFAULT_M_COST_KIB,
            DEFAULT_T_COST,
            DEFAULT_P_COST,
        )?;
        let cipher = Aes256Gcm::new_from_slice(&kek[..]).map_err(|_| Error::Encrypt)?;
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.as_bytes(),
                    aad: WRAP_AAD,
                },
            )
            .map_err(|_| Error::Encrypt)?;
        Ok(WrappedKey {
            kdf: KDF_ARGON2ID.to_string(),
            m_cost_kib: DEFAULT_M_COST_KIB,
            t_cost: DEFAULT_T_COST,
            p_cost: DEFAULT_P_COST,
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        })
    }

    /// Recover the data key. A wrong passphrase gives [`Error::WrongPassphrase`], never a wrong key.
    ///
    /// Unsupported KDFs and absurd costs (memory over 4 GiB, more than 64 iterations or lanes) are
    /// refused with [`Error::Kdf`]; malformed fields with [`Error::MalformedKey`].
    pub fn unwrap(&self, passphrase: &[u8]) -> Result<DataKey, Error> {
        if self.kdf != KDF_ARGON2ID {
            return Err(Error::Kdf(format!(
                "unsupported key-derivation function '{}' (expected {KDF_ARGON2ID})",
                self.kdf
            )));
        }
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(Error::Kdf(format!(
                "argon2id costs out of the accepted range (m={} KiB, t={}, p={})",
                self.m_cost_kib, self.t_cost, self.p_cost
            )));
        }
        let salt =
            hex::decode(&self.salt).map_err(|e| Error::MalformedKey(format!("field salt: {e}")))?;
        let nonce = decode_field("nonce", &self.nonce, NONCE_LEN)?;
        let ciphertext = decode_field("ciphertext", &self.ciphertext, KEY_LEN + TAG_LEN)?;
        let kek = derive_kek(passphrase, &salt, self.m_cost_kib, self.t_cost, self.p_cost)?;
        let cipher = Aes256Gcm::new_from_slice(&kek[..]).map_err(|_| Error::Encrypt)?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: WRAP_AAD,
                    },
                )
                .map_err(|_| Error::WrongPassphrase)?,
        );
        let mut bytes = [0u8; KEY_LEN];
        if plain.len() != KEY_LEN {
            return Err(Error::MalformedKey(
                "unwrapped key has the wrong length".into(),
            ));
        }
        bytes.copy_from_slice(&plain);
        let key = DataKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Re-wrap the same data key under a new passphrase (fresh salt and nonce, current costs).
    ///
    /// Data encrypted with the key stays readable: only the wrapping changes.
    pub fn rewrap(&self, old: &[u8], new: &[u8]) -> Result<WrappedKey, Error> {
        let key = self.unwrap(old)?;
        WrappedKey::wrap(new, &key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_debug_hides_bytes() {
        let key = DataKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert_eq!(key.cbc_passphrase().as_slice(), "ab".repeat(32).as_bytes());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            DataKey::generate().as_bytes(),
            DataKey::generate().as_bytes()
        );
    }

    #[test]
    fn wrap_unwrap_rewrap() {
        let key = DataKey::generate();
        let wrapped = WrappedKey::wrap(b"correct horse", &key).expect("wrap");
        assert_eq!(wrapped.kdf, "argon2id");
        assert_eq!(
            (wrapped.m_cost_kib, wrapped.t_cost, wrapped.p_cost),
            (19456, 2, 1)
        );
        let json = serde_json::to_string(&wrapped).expect("json");
        let back: WrappedKey = serde_json::from_str(&json).expect("json back");
        assert_eq!(back, wrapped);
        assert_eq!(
            back.unwrap(b"correct horse").expect("unwrap").as_bytes(),
            key.as_bytes()
        );
        assert_eq!(
            back.unwrap(b"wrong horse").unwrap_err(),
            Error::WrongPassphrase
        );

        let rewrapped = wrapped
            .rewrap(b"correct horse", b"battery staple")
            .expect("rewrap");
        assert_ne!(rewrapped.salt, wrapped.salt);
        assert_eq!(
            rewrapped
                .unwrap(b"battery staple")
                .expect("unwrap")
                .as_bytes(),
            key.as_bytes()
        );
        assert_eq!(
            rewrapped.unwrap(b"correct horse").unwrap_err(),
            Error::WrongPassphrase
        );
        assert_eq!(
            wrapped.rewrap(b"nope", b"x").unwrap_err(),
            Error::WrongPassphrase
        );
        // Neither the key nor the passphrase shows up in Debug output.
        let dbg = format!("{rewrapped:?}");
        assert!(!dbg.contains(&hex::encode(key.as_bytes())));
        assert!(!dbg.contains("battery"));
    }

    #[test]
    fn malformed_wrapped_keys_are_refused() {
        let good = WrappedKey {
            kdf: "argon2id".into(),
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
            salt: "00".repeat(16),
            nonce: "00".repeat(12),
            ciphertext: "00".repeat(48),
        };
        assert_eq!(good.unwrap(b"x").unwrap_err(), Error::WrongPassphrase);
        let mut k = good.clone();
        k.kdf = "scrypt".into();
        assert!(matches!(k.unwrap(b"x"), Err(Error::Kdf(_))));
        let mut k = good.clone();
        k.m_cost_kib = u32::MAX;
        assert!(matches!(k.unwrap(b"x"), Err(Error::Kdf(_))));
        let mut k = good.clone();
        k.nonce = "zz".into();
        assert!(matches!(k.unwrap(b"x"), Err(Error::MalformedKey(_))));
        let mut k = good.clone();
        k.ciphertext = "00".repeat(47);
        assert!(matches!(k.unwrap(b"x"), Err(Error::MalformedKey(_))));
        let mut k = good;
        k.salt = "00".repeat(2);
        assert!(matches!(k.unwrap(b"x"), Err(Error::Kdf(_))));
    }
}
