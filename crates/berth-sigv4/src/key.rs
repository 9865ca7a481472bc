//! Signing-key derivation (SigV4 "task 3") with a small cache.
//!
//! The key depends only on (secret, date, region, service), so within a day
//! every request from a client reuses it. The cache is a fixed-size,
//! direct-mapped table behind a mutex: a hit costs one hash and a few string
//! comparisons instead of four HMACs, and a miss allocates once on insert.
//! Entries are only inserted after a signature verified, so unauthenticated
//! traffic cannot churn it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A derived SigV4 signing key.
pub(crate) type SigningKey = [u8; 32];

const SLOTS: usize = 64;

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none.
    // Fall back to an HMAC keyed with nothing rather than panicking.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

/// Derives `kSigning` from the secret and the credential scope.
pub(crate) fn derive_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> SigningKey {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

struct Entry {
    secret: String,
    date: String,
    region: String,
    service: String,
    key: SigningKey,
}

/// Direct-mapped signing-key cache.
pub(crate) struct KeyCache {
    slots: Mutex<Vec<Option<Entry>>>,
    hasher: RandomState,
}

impl KeyCache {
    pub(crate) fn new() -> Self {
        let mut slots = Vec::with_capacity(SLOTS);
        slots.resize_with(SLOTS, || None);
        Self {
            slots: Mutex::new(slots),
            hasher: RandomState::new(),
        }
    }

    fn slot(&self, secret: &str, date: &str, region: &str, service: &str) -> usize {
        let h = self.hasher.hash_one((secret, date, region, service));
        // SLOTS is tiny, the truncation is intended
        (h as usize) % SLOTS
    }

    /// The cached key, or a freshly derived one (not inserted).
    pub(crate) fn get(&self, secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
        let i = self.slot(secret, date, region, service);
        {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Some(e)) = slots.get(i) {
                if e.date == date
                    && e.region == region
                    && e.service == service
                    && e.secret == secret
                {
                    return e.key;
                }
            }
        }
        derive_signing_key(secret, date, region, service)
    }

    /// Remembers a key that just verified a signature.
    pub(crate) fn insert(
        &self,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
        key: SigningKey,
    ) {
        let i = self.slot(secret, date, region, service);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(i) {
            if let Some(e) = slot {
                if e.key == key && e.date == date && e.region == region && e.service == service {
                    return;
                }
            }
            *slot = Some(Entry {
                secret: secret.to_owned(),
                date: date.to_owned(),
                region: region.to_owned(),
                service: service.to_owned(),
                key,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_documented_signing_key() {
        // From the AWS SigV4 documentation example (iam, 20150830, us-east-1).
        let key = derive_signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn cache_round_trip() {
        let cache = KeyCache::new();
        let k = cache.get("s", "20200101", "r", "svc");
        cache.insert("s", "20200101", "r", "svc", k);
        assert_eq!(cache.get("s", "20200101", "r", "svc"), k);
        assert_ne!(cache.get("t", "20200101", "r", "svc"), k);
    }
}
