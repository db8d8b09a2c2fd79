//! Pure: who owns an IAM role. Every role the operator creates carries these tags, and
//! the operator never changes or deletes a role whose tags do not name the object in hand.

use std::collections::BTreeMap;

use kube::ResourceExt;

use irsa_api::PodIamRole;

pub const TAG_CLUSTER: &str = "irsa.dev/cluster";
pub const TAG_NAMESPACE: &str = "irsa.dev/namespace";
pub const TAG_NAME: &str = "irsa.dev/name";
pub const TAG_UID: &str = "irsa.dev/uid";
/// Keys under this prefix are the operator's; a spec may not set them.
pub const OWNERSHIP_TAG_PREFIX: &str = "irsa.dev/";

/// Which existing roles, not tagged for this object, it may take over (and re-tag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Adoption {
    /// None: such a role is a conflict.
    #[default]
    Never,
    /// The retained role of an earlier object with the same cluster, namespace and name.
    Retained,
    /// Also roles no PodIamRole of this cluster owns (made by hand, eksctl, Terraform or
    /// another cluster), as a guardrail allows.
    Foreign,
}

/// The `irsa.dev/cluster` tag of a role kept by `deletionPolicy: Retain`. It is no longer
/// this cluster's: no PodIamRole and no orphan scan touches it again, unless a PodIamRole
/// of the same namespace and name adopts it back.
pub fn released_cluster_tag(cluster: &str) -> String {
    format!("released-from-{cluster}")
}

/// Who a role belongs to: the identity carried in its ownership tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    /// The owner a PodIamRole of `cluster` writes into its role's tags.
    pub fn of(object: &PodIamRole, cluster: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
            uid: object.uid().unwrap_or_default(),
        }
    }

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

    /// Whether a role with these tags is this object's, or one `adoption` lets it take.
    /// A role another PodIamRole of this cluster owns is never taken.
    pub fn may_take(&self, tags: &BTreeMap<String, String>, adoption: Adoption) -> bool {
        let tag = |key: &str| tags.get(key).map(String::as_str);
        let same_cluster = tag(TAG_CLUSTER) == Some(self.cluster.as_str());
        let released_here = tag(TAG_CLUSTER) == Some(released_cluster_tag(&self.cluster).as_str());
        let same_object = (same_cluster || released_here)
            && tag(TAG_NAMESPACE) == Some(self.namespace.as_str())
            && tag(TAG_NAME) == Some(self.name.as_str());
        match adoption {
            _ if self.mismatch(tags).is_none() => true,
            Adoption::Never => false,
            Adoption::Retained => same_object,
            Adoption::Foreign => same_object || !same_cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            cluster: "prod".into(),
            namespace: "shop".into(),
            name: "payments".into(),
            uid: "new".into(),
        }
    }

    fn tagged(cluster: &str, namespace: &str, name: &str, uid: &str) -> BTreeMap<String, String> {
        Owner {
            cluster: cluster.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
        .tags()
    }

    #[test]
    fn who_may_take_which_role() {
        let ours = tagged("prod", "shop", "payments", "new");
        let retained = tagged("prod", "shop", "payments", "old");
        let released = tagged(&released_cluster_tag("prod"), "shop", "payments", "old");
        let sibling = tagged("prod", "shop", "orders", "x");
        let other_cluster = tagged("staging", "shop", "payments", "y");
        let by_hand = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let cases = [
            (Adoption::Never, [true, false, false, false, false, false]),
            (Adoption::Retained, [true, true, true, false, false, false]),
            (Adoption::Foreign, [true, true, true, false, true, true]),
        ];
        for (adoption, expected) in cases {
            let got = [
                &ours,
                &retained,
                &released,
                &sibling,
                &other_cluster,
                &by_hand,
            ]
            .map(|tags| owner().may_take(tags, adoption));
            assert_eq!(got, expected, "{adoption:?}");
        }
    }
}
