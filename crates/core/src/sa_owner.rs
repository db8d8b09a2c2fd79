//! Pure: which PodIamRole owns a ServiceAccount's role annotation when several name the
//! same ServiceAccount. The oldest wins (creation time, then name), so every replica and
//! every reconcile picks the same one, and a newcomer can never take it over.

use kube::ResourceExt;

use irsa_api::PodIamRole;

/// The sort key: older first, name breaks ties within the same second.
fn seniority(role: &PodIamRole) -> (Option<jiff::Timestamp>, String) {
    let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (created, role.name_any())
}

/// The name of the PodIamRole that owns `object`'s ServiceAccount instead of `object`,
/// or `None` when `object` is the owner. Objects being deleted own nothing.
pub fn other_owner<'r>(
    object: &PodIamRole,
    roles: impl IntoIterator<Item = &'r PodIamRole>,
) -> Option<String> {
    let own = seniority(object);
    roles
        .into_iter()
        .filter(|role| role.namespace() == object.namespace())
        .filter(|role| role.spec.service_account_name == object.spec.service_account_name)
        .filter(|role| role.metadata.deletion_timestamp.is_none())
        .filter(|role| role.uid() != object.uid())
        .map(seniority)
        .filter(|other| *other < own)
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::testing::pod_iam_role;

    fn role(name: &str, service_account: &str, created_second: i64) -> PodIamRole {
        let mut role = pod_iam_role("shop", name);
        role.spec.service_account_name = service_account.into();
        role.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::from_second(created_second).unwrap()));
        role
    }

    #[test]
    fn the_oldest_owns_and_names_break_ties() {
        let old = role("b-old", "payments", 100);
        let young = role("a-young", "payments", 200);
        let twin = role("a-twin", "payments", 100);
        let roles = vec![old.clone(), young.clone(), twin.clone()];
        assert_eq!(other_owner(&twin, &roles), None);
        assert_eq!(other_owner(&old, &roles).as_deref(), Some("a-twin"));
        assert_eq!(other_owner(&young, &roles).as_deref(), Some("a-twin"));
    }

    #[test]
    fn other_service_accounts_namespaces_and_deletions_do_not_compete() {
        let mine = role("mine", "payments", 200);
        let other_sa = role("other-sa", "billing", 100);
        let mut other_ns = role("other-ns", "payments", 100);
        other_ns.metadata.namespace = Some("bank".into());
        let mut leaving = role("leaving", "payments", 100);
        leaving.metadata.deletion_timestamp =
            Some(Time(jiff::Timestamp::from_second(300).unwrap()));
        let roles = vec![mine.clone(), other_sa, other_ns, leaving];
        assert_eq!(other_owner(&mine, &roles), None);
    }

    #[test]
    fn a_role_not_yet_in_the_cache_still_sees_its_elders() {
        let elder = role("elder", "payments", 100);
        let newcomer = role("newcomer", "payments", 200);
        assert_eq!(other_owner(&newcomer, &[elder]).as_deref(), Some("elder"));
    }
}
