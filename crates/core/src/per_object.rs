//! State kept per PodIamRole, by UID, that must not outlive its object. An entry goes on
//! the object's delete event or the end of its finalizer ([`PerObject::remove`]), and on
//! any listing or sweep that no longer holds its UID ([`PerObject::retain_live`]): objects
//! deleted while the operator was down, with their namespace, or before their first
//! reconcile. The table shrinks as it empties, so churn leaves no capacity behind either.

use std::{collections::HashMap, hash::Hash};

/// Below this capacity a table is not worth shrinking.
const MIN_CAPACITY: usize = 64;

#[derive(Debug)]
pub struct PerObject<V> {
    entries: HashMap<String, V>,
}

impl<V> Default for PerObject<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V> PerObject<V> {
    pub fn get(&self, uid: &str) -> Option<&V> {
        self.entries.get(uid)
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    pub fn insert(&mut self, uid: String, value: V) {
        self.entries.insert(uid, value);
    }

    /// The entry of `uid`, made with `default` if there is none.
    pub fn get_or_insert(&mut self, uid: &str, default: impl FnOnce() -> V) -> &mut V {
        self.entries.entry(uid.to_string()).or_insert_with(default)
    }

    /// The object is gone (or its state is done with): its entry goes.
    pub fn remove(&mut self, uid: &str) -> Option<V> {
        let removed = self.entries.remove(uid);
        self.shrink();
        removed
    }

    /// Keeps the entries of the UIDs `live` holds: what a listing of the objects that
    /// exist, or a sweep against the cache of them, no longer holds is gone.
    pub fn retain_live(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.retain(|uid, _| live(uid));
    }

    /// Keeps the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut V) -> bool) {
        self.entries.retain(|uid, value| keep(uid, value));
        self.shrink();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries the table has room for: what it costs after churn.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    fn shrink(&mut self) {
        shrink(&mut self.entries);
    }
}

/// A map never gives back its table on removal: halve it once it is a quarter full, so
/// the cost of each shrink is paid by the removals before it.
pub(crate) fn shrink<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    let len = map.len();
    if map.capacity() > MIN_CAPACITY.max(4 * len) {
        map.shrink_to(MIN_CAPACITY.max(2 * len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn uid(cycle: usize, i: usize) -> String {
        format!("{cycle:04}-{i:04}-uid")
    }

    /// Cycles of many objects, never the same UID twice, each cycle ending one way.
    fn churn(end: impl Fn(&mut PerObject<u32>, usize, &[String])) -> PerObject<u32> {
        let mut table = PerObject::default();
        for cycle in 0..50 {
            let uids: Vec<String> = (0..500).map(|i| uid(cycle, i)).collect();
            for uid in &uids {
                table.insert(uid.clone(), 1);
                *table.get_or_insert(uid, || 0) += 1;
            }
            assert_eq!(table.len(), 500);
            end(&mut table, cycle, &uids);
        }
        table
    }

    fn assert_empty(table: &PerObject<u32>) {
        assert!(table.is_empty(), "{} entries left", table.len());
        assert!(
            table.capacity() <= MIN_CAPACITY * 2,
            "capacity {} kept after churn",
            table.capacity()
        );
    }

    #[test]
    fn delete_events_leave_nothing() {
        assert_empty(&churn(|table, _, uids| {
            for uid in uids {
                assert_eq!(table.remove(uid), Some(2));
            }
        }));
    }

    #[test]
    fn a_listing_without_them_leaves_nothing() {
        // Deleted while the operator was down, or with their namespace: no delete event.
        assert_empty(&churn(|table, _, _| table.retain_live(|_| false)));
    }

    #[test]
    fn a_mix_of_events_listings_and_never_seen_objects_leaves_nothing() {
        let table = churn(|table, cycle, uids| {
            let (evented, listed) = uids.split_at(uids.len() / 2);
            for uid in evented {
                table.remove(uid);
            }
            // Created and deleted before its first reconcile: its delete finds nothing.
            assert_eq!(table.remove(&format!("{cycle}-never-reconciled")), None);
            assert_eq!(table.len(), listed.len());
            table.retain_live(|_| false);
        });
        assert_empty(&table);
    }

    #[test]
    fn entries_past_their_use_go_and_the_rest_stay() {
        let mut table = PerObject::default();
        for i in 0..1000 {
            table.insert(uid(0, i), i);
        }
        table.retain(|_, at| *at >= 900);
        assert_eq!(table.len(), 100);
        assert_eq!(table.get(&uid(0, 950)), Some(&950));
        table.retain(|_, _| false);
        assert_empty_of(&table);
    }

    fn assert_empty_of(table: &PerObject<usize>) {
        assert!(table.is_empty() && table.capacity() <= MIN_CAPACITY * 2);
    }

    #[test]
    fn a_listing_keeps_the_objects_it_holds() {
        let mut table = PerObject::default();
        let uids: Vec<String> = (0..1000).map(|i| uid(0, i)).collect();
        for uid in &uids {
            table.insert(uid.clone(), ());
        }
        let live: HashSet<&str> = uids.iter().step_by(10).map(String::as_str).collect();
        table.retain_live(|uid| live.contains(uid));
        assert_eq!(table.len(), 100);
        assert!(live.iter().all(|uid| table.contains(uid)));
        assert!(table.capacity() < 1000, "shrunk with what it lost");
    }
}
