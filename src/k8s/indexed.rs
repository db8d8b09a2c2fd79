//! Keeps an `irsa_core::index::Index` in step with a reflector's store, from the same watch
//! events. Put it right after the reflector (and before `listed::flag_listed`): the store
//! then already holds each event, and the index is complete when the listing is flagged.

use std::{
    hash::Hash,
    sync::{Arc, RwLock, RwLockReadGuard},
};

use futures::{Stream, StreamExt};
use kube::{
    Resource, ResourceExt,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};

use irsa_core::index::Index;

/// An index shared by the watch that keeps it and the reconciles that read it.
pub struct Indexed<G, V>(Arc<RwLock<Index<G, V>>>);

impl<G, V> Clone for Indexed<G, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<G, V> Default for Indexed<G, V> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<G, V> Indexed<G, V> {
    /// Read it briefly: the watch waits to apply its next event.
    pub fn read(&self) -> RwLockReadGuard<'_, Index<G, V>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Passes `events` through, applying each to `index`: an object goes in the groups
/// `entry` gives it, with the store's own copy, and out at its deletion; a complete listing
/// replaces everything.
pub fn keep_indexed<K, S, G, V>(
    events: S,
    store: Store<K>,
    index: Indexed<G, V>,
    entry: impl Fn(&Arc<K>) -> (Vec<G>, V),
) -> impl Stream<Item = S::Item>
where
    K: Resource<DynamicType = ()> + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    G: Eq + Hash + Clone,
    V: Clone,
{
    events.inspect(move |event| {
        let Ok(event) = event else { return };
        let mut index = index
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            watcher::Event::Apply(object) => match store.get(&ObjectRef::from_obj(object)) {
                Some(stored) => {
                    let (groups, value) = entry(&stored);
                    index.insert(&id(object), groups, value);
                }
                None => index.remove(&id(object)),
            },
            watcher::Event::Delete(object) => index.remove(&id(object)),
            watcher::Event::InitDone => index.replace_all(store.state().iter().map(|object| {
                let (groups, value) = entry(object);
                (id(object.as_ref()), groups, value)
            })),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    })
}

fn id<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
