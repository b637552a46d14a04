//! Fuzz target: the repository's wrapped data key, as the engine reads it from the stanza's
//! info files (a JSON value, then a `WrappedKey`, then unwrapped with the passphrase), and the
//! cipher name stored beside it. Neither may panic.
//!
//! Unwrapping runs Argon2id with the costs the file states. Costs above pgbr's limits must be
//! refused before any work; within the limits, only cheap costs are run here (a key stating
//! 4 GiB of memory is allowed, and would take the fuzzer's memory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_crypto::{CipherType, WrappedKey};

const PASSPHRASE: &[u8] = b"fuzz passphrase";

/// pgbr's limits on the stated costs (memory in KiB, iterations, lanes).
const MAX_COSTS: (u32, u32, u32) = (4 * 1024 * 1024, 64, 64);
/// The costs small enough to run on every input.
const CHEAP_COSTS: (u32, u32, u32) = (256, 2, 2);

fn within(key: &WrappedKey, (m, t, p): (u32, u32, u32)) -> bool {
    key.m_cost_kib <= m && key.t_cost <= t && key.p_cost <= p
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cipher) = text.parse::<CipherType>() {
            assert_eq!(cipher.as_str().parse::<CipherType>().ok(), Some(cipher));
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(key) = serde_json::from_value::<WrappedKey>(value) else {
        return;
    };
    if !within(&key, MAX_COSTS) {
        assert!(
            key.unwrap(PASSPHRASE).is_err(),
            "costs over the limits accepted"
        );
    } else if within(&key, CHEAP_COSTS) {
        let _ = key.unwrap(PASSPHRASE);
    }
});
