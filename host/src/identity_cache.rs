//! Verified identities, cached until their credential expires, so a busy
//! workload costs its identity provider one verification per credential
//! lifetime instead of one per request.
//!
//! Keys are SHA-256 digests of the provider name and the credential: the
//! cache never holds a credential itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::model::Identity;

/// The cache key: a digest of provider and credential.
pub type CredentialDigest = [u8; 32];

/// Digests a credential for one provider.
pub fn digest(provider: &str, credential: &[u8]) -> CredentialDigest {
    let mut hasher = Sha256::new();
    hasher.update((provider.len() as u64).to_be_bytes());
    hasher.update(provider.as_bytes());
    hasher.update(credential);
    hasher.finalize().into()
}

/// A bounded map from credential digest to identity.
pub struct IdentityCache {
    entries: RwLock<HashMap<CredentialDigest, Identity>>,
    /// Verifications in progress, so concurrent first uses of one credential
    /// (a client warming its pool) cost the identity provider one call.
    in_flight: Mutex<HashMap<CredentialDigest, Arc<tokio::sync::Mutex<()>>>>,
    max_entries: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl IdentityCache {
    /// An empty cache holding at most `max_entries` identities.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The identity for `key` if it has not expired at `now_unix`.
    pub fn get(&self, key: &CredentialDigest, now_unix: u64) -> Option<Identity> {
        let found = self
            .entries
            .read()
            .ok()
            .and_then(|map| map.get(key).filter(|i| i.expires_at > now_unix).cloned());
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Stores an identity until it expires. When full, expired entries go
    /// first; if none expired, the whole cache is cleared (rare: it means
    /// more live credentials than `max_entries`).
    pub fn insert(&self, key: CredentialDigest, identity: Identity, now_unix: u64) {
        if identity.expires_at <= now_unix {
            return;
        }
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= self.max_entries && !map.contains_key(&key) {
                map.retain(|_, i| i.expires_at > now_unix);
                if map.len() >= self.max_entries {
                    map.clear();
                }
            }
            map.insert(key, identity);
        }
    }

    /// Waits until no other task is verifying `key`, and returns a guard
    /// that makes the caller the one that does; check the cache again with
    /// [`Self::get`] after taking it.
    pub async fn verify_once(&self, key: &CredentialDigest) -> VerifyGuard<'_> {
        let lock = self
            .in_flight
            .lock()
            .ok()
            .map(|mut m| m.entry(*key).or_default().clone());
        let guard = match &lock {
            Some(l) => Some(l.clone().lock_owned().await),
            None => None,
        };
        VerifyGuard {
            cache: self,
            key: *key,
            _guard: guard,
        }
    }

    /// Identities held now, by the provider that verified them (expired
    /// ones not yet evicted included: this is what the cache holds). For the
    /// `/metrics` gauge, computed when scraped: one pass under the read lock.
    pub fn entries_by_provider(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        if let Ok(map) = self.entries.read() {
            for identity in map.values() {
                match counts.get_mut(identity.provider.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(identity.provider.clone(), 1);
                    }
                }
            }
        }
        counts
    }

    /// `(hits, misses)` so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Held while one task verifies a credential; others with the same
/// credential wait for it, then find the identity in the cache.
pub struct VerifyGuard<'a> {
    cache: &'a IdentityCache,
    key: CredentialDigest,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for VerifyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.cache.in_flight.lock()
            && map
                .get(&self.key)
                .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            // Only the map and this guard hold it: nobody is waiting.
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityRef;

    fn identity(expires_at: u64) -> Identity {
        Identity {
            principal: EntityRef::new("Test::User", "a"),
            attributes: serde_json::json!({}),
            parents: vec![],
            expires_at,
            trust_anchor: "t".into(),
            provider: "p".into(),
        }
    }

    #[test]
    fn an_identity_is_served_until_its_credential_expires() {
        let cache = IdentityCache::new(10);
        let key = digest("p", b"token");
        cache.insert(key, identity(100), 50);
        assert!(cache.get(&key, 99).is_some());
        assert!(
            cache.get(&key, 100).is_none(),
            "expired at exactly expires_at"
        );
        assert_eq!(cache.stats(), (1, 1));
    }

    #[test]
    fn keys_differ_by_provider_and_credential() {
        assert_ne!(digest("a", b"x"), digest("b", b"x"));
        assert_ne!(digest("a", b"x"), digest("a", b"y"));
        // Length-prefixing stops "ab"+"c" colliding with "a"+"bc".
        assert_ne!(digest("ab", b"c"), digest("a", b"bc"));
    }

    #[test]
    fn entries_are_counted_by_provider() {
        let cache = IdentityCache::new(10);
        assert!(cache.entries_by_provider().is_empty());
        let mut other = identity(1000);
        other.provider = "q".into();
        cache.insert(digest("p", b"1"), identity(1000), 0);
        cache.insert(digest("p", b"2"), identity(1000), 0);
        cache.insert(digest("q", b"1"), other, 0);
        let counts = cache.entries_by_provider();
        assert_eq!(counts.get("p"), Some(&2));
        assert_eq!(counts.get("q"), Some(&1));
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let cache = IdentityCache::new(2);
        for i in 0..5u8 {
            cache.insert(digest("p", &[i]), identity(1000), 0);
        }
        assert!(cache.entries.read().unwrap().len() <= 2);
    }
}
