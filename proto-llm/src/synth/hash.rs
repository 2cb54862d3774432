//! Stable hashing: embedding seeds and ids derived from the caller's response id. (std's
//! hashers may change between releases; these never do.)

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn text_seed(text: &str) -> u64 {
    fnv1a(FNV_OFFSET, text.as_bytes())
}

pub(super) fn token_seed(ids: &[u64]) -> u64 {
    // A different domain than text, so `[1]` and `"\u{1}..."` do not collide by construction.
    ids.iter().fold(fnv1a(FNV_OFFSET, b"tokens:"), |h, id| {
        fnv1a(h, &id.to_le_bytes())
    })
}

/// SplitMix64 step: a well-distributed sequence from any seed.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by 24 base-62 characters derived from `id` and `salt`: opaque-looking,
/// like real ids, and the same for the same inputs.
pub(super) fn derived_id(prefix: &str, id: &str, salt: u64) -> String {
    let mut state = fnv1a(fnv1a(FNV_OFFSET, id.as_bytes()), &salt.to_le_bytes());
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    // 8 digits per draw: 62^8 < 2^64, so every digit is about uniform.
    for _ in 0..3 {
        let mut bits = splitmix64(&mut state);
        for _ in 0..8 {
            let digit = usize::try_from(bits % 62).unwrap_or(0);
            out.push(char::from(BASE62.get(digit).copied().unwrap_or(b'0')));
            bits /= 62;
        }
    }
    out
}
