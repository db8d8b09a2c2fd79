//! Thin Kubernetes IO: the ServiceAccount annotations, the AWS config ConfigMap and Events.

pub mod aws_config;
pub mod events;
pub mod indexed;
pub mod issuer;
pub mod listed;
pub mod service_account;
pub mod watch_list;

/// Every write the operator makes to Kubernetes uses this field manager.
pub const FIELD_MANAGER: &str = "irsa-operator";

/// kubectl's copy of the last manifest it applied: a second copy of the spec.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from a watched object what no reader of the caches uses and what costs most of
/// its memory: the field managers' records and kubectl's copy of the manifest.
pub fn trim_for_cache<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}
