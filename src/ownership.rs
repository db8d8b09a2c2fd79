//! Pure: who owns an IAM role. Every role the operator creates carries these tags, and
//! the operator never changes or deletes a role whose tags do not name the object in hand.

use std::collections::BTreeMap;

pub const TAG_CLUSTER: &str = "irsa.dev/cluster";
pub const TAG_NAMESPACE: &str = "irsa.dev/namespace";
pub const TAG_NAME: &str = "irsa.dev/name";
pub const TAG_UID: &str = "irsa.dev/uid";
/// Keys under this prefix are the operator's; a spec may not set them.
pub const OWNERSHIP_TAG_PREFIX: &str = "irsa.dev/";

/// Who a role belongs to: the identity carried in its ownership tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_CLUSTER.to_string(), self.cluster.clone()),
            (TAG_NAMESPACE.to_string(), self.namespace.clone()),
            (TAG_NAME.to_string(), self.name.clone()),
            (TAG_UID.to_string(), self.uid.clone()),
        ])
    }

    /// Why a role with these tags is not ours, or `None` when it is.
    pub fn mismatch(&self, tags: &BTreeMap<String, String>) -> Option<String> {
        let missing: Vec<String> = self
            .tags()
            .into_iter()
            .filter(|(key, value)| tags.get(key) != Some(value))
            .map(|(key, value)| match tags.get(&key) {
                Some(found) => format!("{key}={found} (expected {value})"),
                None => format!("{key} missing"),
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}
