//! A bounded two-generation cache: recent entries in `young`, older in `old`.
//!
//! When `young` reaches half the capacity, `old` is dropped and `young` takes its place, so the
//! cache never holds more than `capacity` entries and what was used in the last half-capacity
//! insertions survives. Ordered maps keep it free of hash-order effects.

use std::borrow::Borrow;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct TwoGenerationCache<K: Ord, V> {
    young: BTreeMap<K, V>,
    old: BTreeMap<K, V>,
    generation_len_max: usize,
}

impl<K: Ord + Clone, V: Clone> TwoGenerationCache<K, V> {
    pub(crate) fn new(capacity: u32) -> Self {
        let generation_len_max = (capacity as usize / 2).max(1);
        TwoGenerationCache { young: BTreeMap::new(), old: BTreeMap::new(), generation_len_max }
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.generation_len_max {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&key);
        self.young.insert(key, value);
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.young.remove(key);
        self.old.remove(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keeps_recent() {
        let mut cache = TwoGenerationCache::new(10);
        for i in 0..100u32 {
            cache.insert(i, i * 2);
            assert!(cache.len() <= 10);
        }
        assert_eq!(cache.get(&99), Some(&198));
        assert_eq!(cache.get(&95), Some(&190));
        assert_eq!(cache.get(&3), None);
        cache.insert(99, 1);
        assert_eq!(cache.get(&99), Some(&1));
        cache.remove(&99);
        assert_eq!(cache.get(&99), None);
    }

    #[test]
    fn byte_keys_are_looked_up_by_slice() {
        let mut cache: TwoGenerationCache<Vec<u8>, u8> = TwoGenerationCache::new(4);
        cache.insert(vec![1, 2], 3);
        assert_eq!(cache.get([1u8, 2].as_slice()), Some(&3));
        cache.remove([1u8, 2].as_slice());
        assert_eq!(cache.get([1u8, 2].as_slice()), None);
    }
}
