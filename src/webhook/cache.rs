//! ServiceAccount annotations for admissions, from a metadata-only watch cache: an
//! admission costs no API call. A ServiceAccount the cache has not seen yet (created a
//! moment before its pod) is read once from the API server.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Client,
    api::PartialObjectMeta,
    runtime::{WatchStreamExt, reflector, reflector::ObjectRef, reflector::Store, watcher},
};
use tracing::warn;

use crate::k8s::trim_for_cache;

#[derive(Clone)]
pub struct ServiceAccountCache {
    client: Client,
    /// One store per watched namespace, or one for all (`None`).
    scopes: Vec<(Option<String>, Store<PartialObjectMeta<ServiceAccount>>)>,
}

impl ServiceAccountCache {
    /// Starts the watches (in the background, for the life of the process).
    pub fn start(client: Client, namespaces: &[String]) -> Self {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let scopes = scopes
            .into_iter()
            .map(|scope| {
                let api: Api<PartialObjectMeta<ServiceAccount>> = match &scope {
                    Some(ns) => Api::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                };
                let (store, writer) = reflector::store();
                let watch = reflector(
                    writer,
                    watcher(api, watcher::Config::default()).modify(trim_for_cache),
                )
                .default_backoff()
                .for_each(|event| async move {
                    if let Err(error) = event {
                        warn!(%error, "ServiceAccount watch for the webhook failed; retrying");
                    }
                });
                tokio::spawn(watch);
                (scope, store)
            })
            .collect();
        Self { client, scopes }
    }

    /// The ServiceAccount's annotations; `None` when it does not exist, or its namespace
    /// is not watched by this operator.
    pub async fn annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let (_, store) = self
            .scopes
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))?;
        let key = ObjectRef::new(name).within(namespace);
        if let Some(cached) = store.get(&key) {
            return Some(cached.metadata.annotations.clone().unwrap_or_default());
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match api.get_metadata_opt(name).await {
            Ok(found) => found.map(|sa| sa.metadata.annotations.unwrap_or_default()),
            Err(error) => {
                warn!(%error, namespace, name, "cannot read the ServiceAccount of a pod");
                None
            }
        }
    }
}
