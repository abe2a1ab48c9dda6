//! HS256 tokens signed by hand for the auth tests (the router links no JWT library; the plugin does).

use sha2::{Digest, Sha256};

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `header.claims.signature` with HMAC-SHA256 (RFC 2104) over `secret`.
pub fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let signing_input =
        format!("{}.{}", b64url(br#"{"alg":"HS256","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()));
    let inner = Sha256::new().chain_update(key.map(|b| b ^ 0x36)).chain_update(signing_input.as_bytes()).finalize();
    let mac = Sha256::new().chain_update(key.map(|b| b ^ 0x5c)).chain_update(inner).finalize();
    format!("{signing_input}.{}", b64url(&mac))
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}
