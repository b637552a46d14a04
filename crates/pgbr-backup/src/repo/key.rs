//! The stanza's data key, unlocked with the repository passphrase.

use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::CipherInfo;

use crate::codecs;
use crate::config::RepoOptions;
use crate::error::{Error, Result};

/// Unlocks the stanza's data key with the repository passphrase.
pub(crate) fn unlock(
    opts: &RepoOptions,
    repo_name: &str,
    cipher: &CipherInfo,
) -> Result<Option<DataKey>> {
    let stored = codecs::cipher_type(cipher.cipher_type);
    if stored != opts.cipher_type {
        return Err(Error::config(format!(
            "{repo_name}: option '{}-cipher-type' is {} but the stanza was created with {stored}",
            opts.name(),
            opts.cipher_type
        )));
    }
    if stored == CipherType::None {
        return Ok(None);
    }
    let pass = opts.cipher_pass.as_ref().ok_or_else(|| {
        Error::config(format!(
            "option '{}-cipher-pass' is required: {repo_name} is encrypted",
            opts.name()
        ))
    })?;
    let wrapped: WrappedKey = cipher
        .wrapped_key
        .clone()
        .ok_or_else(|| Error::Corrupt(format!("{repo_name}: the stanza's info files hold no key")))
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| {
                Error::Corrupt(format!(
                    "{repo_name}: the stanza's wrapped key is invalid: {e}"
                ))
            })
        })?;
    match wrapped.unwrap(pass.expose()) {
        Ok(k) => Ok(Some(k)),
        Err(pgbr_crypto::Error::WrongPassphrase) => Err(Error::WrongPassphrase {
            repo: repo_name.to_string(),
            index: opts.index,
        }),
        Err(source) => Err(Error::Crypto {
            context: format!("{repo_name}: unlocking the stanza's key"),
            source,
        }),
    }
}
