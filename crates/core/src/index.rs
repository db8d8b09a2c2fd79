//! Pure: the objects of a cache grouped by what reconciles look them up by (PodIamRoles by
//! namespace, ServiceAccounts by the value of an annotation of ours), so a lookup costs
//! what its group holds, not a copy of the whole cache. It is kept beside the cache, from
//! the same watch events; an object's entries go with it, and empty groups go too.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

use crate::per_object::shrink;

/// Objects, by an ID unique in the cache, in the groups `G` each belongs to.
#[derive(Debug)]
pub struct Index<G, V> {
    groups: HashMap<G, BTreeMap<String, V>>,
    /// The groups each object is in: what its removal takes it out of.
    membership: HashMap<String, Vec<G>>,
}

impl<G, V> Default for Index<G, V> {
    fn default() -> Self {
        Self {
            groups: HashMap::new(),
            membership: HashMap::new(),
        }
    }
}

impl<G: Eq + Hash + Clone, V: Clone> Index<G, V> {
    /// Puts the object `id` in `groups` (and only those) with `value`.
    pub fn insert(&mut self, id: &str, groups: Vec<G>, value: V) {
        self.remove(id);
        if groups.is_empty() {
            return;
        }
        for group in &groups {
            (self.groups.entry(group.clone()).or_default()).insert(id.to_string(), value.clone());
        }
        self.membership.insert(id.to_string(), groups);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(groups) = self.membership.remove(id) else {
            return;
        };
        for group in groups {
            if let Some(members) = self.groups.get_mut(&group) {
                members.remove(id);
                if members.is_empty() {
                    self.groups.remove(&group);
                }
            }
        }
        shrink(&mut self.groups);
        shrink(&mut self.membership);
    }

    /// Starts over from a complete listing: what it does not hold is gone.
    pub fn replace_all(&mut self, entries: impl IntoIterator<Item = (String, Vec<G>, V)>) {
        *self = Self::default();
        for (id, groups, value) in entries {
            self.insert(&id, groups, value);
        }
    }

    /// The values in `group`, in the order of their IDs.
    pub fn group(&self, group: &G) -> impl Iterator<Item = &V> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// How many objects are in some group.
    pub fn len(&self) -> usize {
        self.membership.len()
    }

    pub fn is_empty(&self) -> bool {
        self.membership.is_empty()
    }

    /// Room in its tables: what the index costs after churn.
    pub fn capacity(&self) -> usize {
        self.groups.capacity() + self.membership.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(index: &Index<&'static str, u32>, group: &'static str) -> Vec<u32> {
        index.group(&group).copied().collect()
    }

    #[test]
    fn an_object_is_in_its_groups_until_it_moves_or_goes() {
        let mut index = Index::default();
        index.insert("shop/b", vec!["shop"], 2);
        index.insert("shop/a", vec!["shop"], 1);
        index.insert("bank/a", vec!["bank", "audited"], 3);
        assert_eq!(members(&index, "shop"), [1, 2]);
        assert_eq!(members(&index, "audited"), [3]);
        // An update moves it: out of the groups it left, into the new ones.
        index.insert("bank/a", vec!["bank"], 4);
        assert_eq!(members(&index, "audited"), [] as [u32; 0]);
        assert_eq!(members(&index, "bank"), [4]);
        // In no group: not kept at all.
        index.insert("shop/a", vec![], 5);
        assert_eq!(members(&index, "shop"), [2]);
        assert_eq!(index.len(), 2);
        index.remove("shop/b");
        index.remove("never-seen");
        assert_eq!(members(&index, "shop"), [] as [u32; 0]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_listing_replaces_everything() {
        let mut index = Index::default();
        index.insert("shop/a", vec!["shop"], 1);
        index.replace_all([("bank/b".to_string(), vec!["bank"], 2)]);
        assert_eq!(members(&index, "shop"), [] as [u32; 0]);
        assert_eq!(members(&index, "bank"), [2]);
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let mut index = Index::default();
        let mut after_first = None;
        for cycle in 0..50 {
            let ids: Vec<String> = (0..500).map(|i| format!("ns-{cycle}/app-{i}")).collect();
            for (i, id) in ids.iter().enumerate() {
                index.insert(id, vec![format!("ns-{cycle}"), format!("sa-{i}")], i);
            }
            assert_eq!(index.len(), 500);
            for id in &ids {
                index.remove(id);
            }
            assert!(index.is_empty());
            assert!(index.groups.is_empty());
            // Room for a few dozen entries is kept, and no more as cycles go by.
            let capacity = *after_first.get_or_insert(index.capacity());
            assert!(
                index.capacity() <= capacity.min(256),
                "{}",
                index.capacity()
            );
        }
    }
}
