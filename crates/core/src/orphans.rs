//! Pure: which IAM roles are orphans, and which have been orphans long enough to delete.
//!
//! An orphan is a role under the operator's path, tagged for this cluster with a complete
//! owner (namespace, name, UID), whose PodIamRole no longer exists: for example one
//! force-deleted while the operator was down. A role whose tags do not say it is ours is
//! never an orphan, and neither is a role released by `deletionPolicy: Retain`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use crate::{
    iam_role::RoleSummary,
    ownership::{Owner, TAG_CLUSTER, TAG_NAME, TAG_NAMESPACE, TAG_UID, released_cluster_tag},
    plan::IamOp,
    snapshot::Snapshot,
};

/// The write that releases a retained role, if it is still ours.
pub fn plan_release(owner: &Owner, observed: Option<&RoleSummary>) -> Vec<IamOp> {
    match observed {
        Some(role) if owner.mismatch(&role.tags).is_none() => {
            let released = released_cluster_tag(&owner.cluster);
            vec![IamOp::TagRole(BTreeMap::from([(
                TAG_CLUSTER.to_string(),
                released,
            )]))]
        }
        _ => Vec::new(),
    }
}

/// A PodIamRole that exists, as its role's ownership tags spell it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveObject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Which roles this operator may judge, of those under its role path (all a snapshot
/// holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub cluster: String,
    /// The namespaces the operator watches; `None` for all. A role of another namespace
    /// may belong to a PodIamRole this operator cannot see.
    pub namespaces: Option<BTreeSet<String>>,
}

/// An orphaned role and how long it has been seen orphaned without a break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub role_name: String,
    pub owner: Owner,
    pub orphaned_for: Duration,
}

/// The result of one scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every orphan, deletable or not.
    pub orphans: Vec<Orphan>,
    /// The orphans seen continuously for at least the grace period.
    pub to_delete: Vec<Orphan>,
}

/// Remembers since when each orphan has been seen, from one scan to the next.
#[derive(Debug, Default)]
pub struct OrphanTracker {
    first_seen: BTreeMap<String, Instant>,
}

impl OrphanTracker {
    /// Judges one complete listing of the account's roles against the PodIamRoles that
    /// exist. `delete_after` is the grace period; `None` only reports.
    pub fn scan(
        &mut self,
        roles: &Snapshot,
        live: &BTreeSet<LiveObject>,
        scope: &Scope,
        now: Instant,
        delete_after: Option<Duration>,
    ) -> Verdict {
        let mut orphans: Vec<(String, Owner)> = roles
            .roles()
            .filter_map(|(name, role)| {
                Some((
                    name.to_string(),
                    claimed_owner(&role.ownership_tags(), scope)?,
                ))
            })
            .filter(|(_, owner)| !live.contains(&live_key(owner)))
            .collect();
        orphans.sort_by(|a, b| a.0.cmp(&b.0));
        // A role that stopped being an orphan, even once, starts over.
        self.first_seen
            .retain(|name, _| orphans.iter().any(|(orphan, _)| orphan == name));
        let mut verdict = Verdict::default();
        for (role_name, owner) in orphans {
            let since = *self.first_seen.entry(role_name.clone()).or_insert(now);
            let orphan = Orphan {
                role_name,
                owner,
                orphaned_for: now.saturating_duration_since(since),
            };
            if delete_after.is_some_and(|grace| orphan.orphaned_for >= grace) {
                verdict.to_delete.push(orphan.clone());
            }
            verdict.orphans.push(orphan);
        }
        verdict
    }
}

/// The owner a role's tags name, when they say it is this operator's to judge.
fn claimed_owner(tags: &BTreeMap<String, String>, scope: &Scope) -> Option<Owner> {
    if tags.get(TAG_CLUSTER) != Some(&scope.cluster) {
        return None;
    }
    let tag = |key: &str| tags.get(key).filter(|v| !v.is_empty()).cloned();
    let owner = Owner {
        cluster: scope.cluster.clone(),
        namespace: tag(TAG_NAMESPACE)?,
        name: tag(TAG_NAME)?,
        uid: tag(TAG_UID)?,
    };
    let watched = scope
        .namespaces
        .as_ref()
        .is_none_or(|namespaces| namespaces.contains(&owner.namespace));
    watched.then_some(owner)
}

fn live_key(owner: &Owner) -> LiveObject {
    LiveObject {
        namespace: owner.namespace.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        iam_role::ListedRole,
        testing::{desired, owner},
    };

    const GRACE: Duration = Duration::from_secs(3600);

    fn scope() -> Scope {
        Scope {
            cluster: "prod".into(),
            namespaces: None,
        }
    }

    /// A listing of these roles, as the observer keeps it (under `/irsa/prod/` only).
    fn listing(roles: Vec<ListedRole>) -> Snapshot {
        let mut snapshot = Snapshot::new(Instant::now(), "/irsa/prod/", BTreeSet::new());
        snapshot.add(roles);
        snapshot
    }

    fn object(namespace: &str, name: &str, uid: &str) -> LiveObject {
        LiveObject {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn role(name: &str, owner: &LiveObject) -> ListedRole {
        let owner = Owner {
            cluster: "prod".into(),
            namespace: owner.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        };
        ListedRole {
            name: name.into(),
            path: "/irsa/prod/".into(),
            tags: owner.tags(),
            ..ListedRole::default()
        }
    }

    /// The role of `testing::owner()` as `GetRole` shows it.
    fn owned_summary() -> RoleSummary {
        let want = desired();
        RoleSummary {
            arn: want.arn,
            role_id: "AROAEXAMPLE".into(),
            path: want.path,
            trust_policy: want.trust_policy,
            description: want.description,
            max_session_duration: want.max_session_duration,
            permissions_boundary: None,
            tags: want.tags,
        }
    }

    #[test]
    fn a_released_role_is_no_orphan_and_only_an_owned_role_is_released() {
        let owner = owner();
        let gone = object(&owner.namespace, &owner.name, &owner.uid);
        let mut released = role("r", &gone);
        let [IamOp::TagRole(tags)] = &plan_release(&owner, Some(&owned_summary()))[..] else {
            panic!("an owned role is released with one TagRole");
        };
        released.tags.extend(tags.clone());
        let verdict = OrphanTracker::default().scan(
            &listing(vec![released]),
            &BTreeSet::new(),
            &scope(),
            Instant::now(),
            Some(Duration::ZERO),
        );
        assert_eq!(verdict, Verdict::default());

        let mut foreign = owned_summary();
        foreign.tags.insert(TAG_UID.into(), "someone-else".into());
        assert!(plan_release(&owner, Some(&foreign)).is_empty());
        assert!(plan_release(&owner, None).is_empty());
    }

    fn names(orphans: &[Orphan]) -> Vec<&str> {
        orphans.iter().map(|o| o.role_name.as_str()).collect()
    }

    #[test]
    fn a_role_whose_object_exists_is_never_an_orphan() {
        let live = object("shop", "payments", "uid-1");
        let verdict = OrphanTracker::default().scan(
            &listing(vec![role("r", &live)]),
            &BTreeSet::from([live]),
            &scope(),
            Instant::now(),
            Some(Duration::ZERO),
        );
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn an_object_recreated_with_another_uid_leaves_the_old_role_orphaned() {
        let old = object("shop", "payments", "uid-1");
        let verdict = OrphanTracker::default().scan(
            &listing(vec![role("r", &old)]),
            &BTreeSet::from([object("shop", "payments", "uid-2")]),
            &scope(),
            Instant::now(),
            None,
        );
        assert_eq!(names(&verdict.orphans), ["r"]);
        assert_eq!(verdict.orphans[0].owner.uid, "uid-1");
        assert!(verdict.to_delete.is_empty(), "reporting only");
    }

    #[test]
    fn roles_not_claimed_by_this_cluster_are_ignored() {
        let gone = object("shop", "payments", "uid-1");
        let mut other_cluster = role("other-cluster", &gone);
        other_cluster
            .tags
            .insert(TAG_CLUSTER.into(), "staging".into());
        let mut other_path = role("other-path", &gone);
        other_path.path = "/".into();
        let mut no_uid = role("no-uid", &gone);
        no_uid.tags.remove(TAG_UID);
        let mut empty_name = role("empty-name", &gone);
        empty_name.tags.insert(TAG_NAME.into(), String::new());
        let unwatched = role("unwatched", &object("elsewhere", "x", "uid-3"));
        let scope = Scope {
            namespaces: Some(BTreeSet::from(["shop".to_string()])),
            ..scope()
        };
        let verdict = OrphanTracker::default().scan(
            &listing(vec![
                other_cluster,
                other_path,
                no_uid,
                empty_name,
                unwatched,
            ]),
            &BTreeSet::new(),
            &scope,
            Instant::now(),
            Some(Duration::ZERO),
        );
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn deletion_waits_for_the_grace_period_seen_without_a_break() {
        let gone = object("shop", "payments", "uid-1");
        let roles = listing(vec![role("r", &gone)]);
        let nothing_live = BTreeSet::new();
        let mut tracker = OrphanTracker::default();
        let start = Instant::now();
        let scan = |tracker: &mut OrphanTracker, live: &BTreeSet<LiveObject>, at: Duration| {
            tracker.scan(&roles, live, &scope(), start + at, Some(GRACE))
        };

        let first = scan(&mut tracker, &nothing_live, Duration::ZERO);
        assert_eq!(names(&first.orphans), ["r"]);
        assert!(first.to_delete.is_empty());
        let later = scan(&mut tracker, &nothing_live, GRACE - Duration::from_secs(1));
        assert!(later.to_delete.is_empty());
        assert_eq!(
            later.orphans[0].orphaned_for,
            GRACE - Duration::from_secs(1)
        );

        // The object came back for one scan: the clock starts over.
        let back = scan(&mut tracker, &BTreeSet::from([gone]), GRACE);
        assert!(back.orphans.is_empty());
        let again = scan(&mut tracker, &nothing_live, GRACE * 2);
        assert!(again.to_delete.is_empty());
        let expired = scan(&mut tracker, &nothing_live, GRACE * 3);
        assert_eq!(names(&expired.to_delete), ["r"]);
        assert_eq!(expired.to_delete[0].owner.name, "payments");
    }

    #[test]
    fn a_role_gone_from_iam_is_forgotten() {
        let gone = object("shop", "payments", "uid-1");
        let mut tracker = OrphanTracker::default();
        let start = Instant::now();
        tracker.scan(
            &listing(vec![role("r", &gone)]),
            &BTreeSet::new(),
            &scope(),
            start,
            None,
        );
        tracker.scan(
            &listing(vec![]),
            &BTreeSet::new(),
            &scope(),
            start + GRACE,
            None,
        );
        let back = tracker.scan(
            &listing(vec![role("r", &gone)]),
            &BTreeSet::new(),
            &scope(),
            start + GRACE * 2,
            Some(GRACE),
        );
        assert!(back.to_delete.is_empty());
        assert_eq!(back.orphans[0].orphaned_for, Duration::ZERO);
    }
}
