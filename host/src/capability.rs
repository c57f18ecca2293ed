//! Capabilities a connector learned from upstream responses (e.g. a Spanner
//! session name) and the backend identity each is bound to (its
//! `creator_role`).
//!
//! A capability is a name a client can present again later; whoever holds
//! it could otherwise act as whoever created it. The gate allows a call that
//! presents one only when the bound value is one the caller's policies name.
//! Each replica keeps its own map; a replica that has not seen a capability
//! asks upstream (the connector's `lookup`), so no shared store is needed.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// How long a learned binding is trusted before upstream is asked again.
/// Spanner's multiplexed sessions live up to 7 days; regular ones about an
/// hour idle. Asking again after a day costs one lookup per session per day.
pub const TTL_SECS: u64 = 24 * 3600;

const SHARDS: usize = 16;

struct Entry {
    value: String,
    learned_at: u64,
}

/// A bounded map from capability to bound value.
pub struct CapabilityCache {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    max_per_shard: usize,
}

impl CapabilityCache {
    /// An empty cache holding about `max_entries` capabilities.
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: (max_entries / SHARDS).max(1),
        }
    }

    fn shard(&self, capability: &str) -> Option<&Mutex<HashMap<String, Entry>>> {
        // FNV-1a: cheap, and the shard choice needs no secrecy.
        let hash = capability.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.shards.get((hash % SHARDS as u64) as usize)
    }

    /// The value `capability` is bound to, if learned within the TTL.
    pub fn get(&self, capability: &str, now_unix: u64) -> Option<String> {
        let map = self.shard(capability)?.lock().ok()?;
        map.get(capability)
            .filter(|e| now_unix < e.learned_at.saturating_add(TTL_SECS))
            .map(|e| e.value.clone())
    }

    /// Records that `capability` is bound to `value`.
    pub fn insert(&self, capability: &str, value: &str, now_unix: u64) {
        let Some(Ok(mut map)) = self.shard(capability).map(Mutex::lock) else {
            return;
        };
        if map.len() >= self.max_per_shard && !map.contains_key(capability) {
            map.retain(|_, e| now_unix < e.learned_at.saturating_add(TTL_SECS));
            if map.len() >= self.max_per_shard {
                // Still full of live entries: forget one. A forgotten
                // capability costs one upstream lookup, never a wrong answer.
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(
            capability.to_string(),
            Entry {
                value: value.to_string(),
                learned_at: now_unix,
            },
        );
    }

    /// Number of capabilities held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A short, stable name for a capability in audit records and errors: the
/// capability itself is a bearer secret of sorts and is never written out.
pub fn fingerprint(capability: &str) -> String {
    let digest = Sha256::digest(capability.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_bindings_expire_and_stay_bounded() {
        let cache = CapabilityCache::new(32);
        cache.insert("s1", "reader", 100);
        assert_eq!(cache.get("s1", 100).as_deref(), Some("reader"));
        assert_eq!(cache.get("s1", 100 + TTL_SECS), None);
        assert_eq!(cache.get("s2", 100), None);
        for i in 0..1000 {
            cache.insert(&format!("s{i}"), "r", 200);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        assert_eq!(cache.get("s999", 200).as_deref(), Some("r"));
    }

    #[test]
    fn fingerprints_hide_the_capability() {
        let f = fingerprint("projects/p/instances/i/databases/d/sessions/secret");
        assert!(f.starts_with("sha256:") && f.len() == 19, "{f}");
        assert!(!f.contains("secret"));
    }
}
