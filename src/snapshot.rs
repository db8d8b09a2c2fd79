//! Pure: the account's roles as one bulk listing saw them, and what a drift check can
//! conclude from it. A listing only tells whether a role may have drifted; it is never
//! the authority for a write (IAM is eventually consistent): a role that looks different
//! is read afresh, role by role, before anything changes.

use std::{collections::HashMap, time::Instant};

use crate::{
    desired::DesiredRole,
    observed::{ListedRole, ObservedRole, RoleSummary},
    plan::plan_apply,
};

/// The roles under the operator's role path, from one pass over the account.
#[derive(Debug)]
pub struct Snapshot {
    /// When the listing started: what a sync finished before then wrote is in it.
    pub started: Instant,
    roles: HashMap<String, ListedRole>,
}

impl Snapshot {
    /// Keeps only the roles under `role_path`: no PodIamRole of this operator has another.
    pub fn new(started: Instant, listed: Vec<ListedRole>, role_path: &str) -> Self {
        let roles = listed
            .into_iter()
            .filter(|role| role.path == role_path)
            .map(|role| (role.name.clone(), role))
            .collect();
        Self { started, roles }
    }

    /// The role of that name, if the listing has it under the role path.
    pub fn role(&self, name: &str) -> Option<&ListedRole> {
        self.roles.get(name)
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// A listed role as the plan reads an observed one. Listings have no description or
/// maximum session duration: these are taken as given.
pub fn as_observed(
    listed: &ListedRole,
    description: &str,
    max_session_duration: i32,
) -> ObservedRole {
    ObservedRole {
        summary: RoleSummary {
            arn: listed.arn.clone(),
            path: listed.path.clone(),
            trust_policy: listed.trust_policy.clone(),
            description: description.to_string(),
            max_session_duration,
            permissions_boundary: listed.permissions_boundary.clone(),
            tags: listed.tags.clone(),
        },
        inline_policies: listed.inline_policies.clone(),
        managed_policy_arns: listed.managed_policy_arns.clone(),
    }
}

/// What a listing says about a role synced at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// The listing shows the role as desired: nothing to read, nothing to write.
    None,
    /// Missing or different in the listing: read it afresh and repair.
    Suspected,
    /// The listing started before the last sync, so it cannot tell.
    Unknown,
}

/// Compares `desired` with the listing, for a role last synced at `synced_at`. A listing
/// has no description or maximum session duration; those are taken as last synced.
pub fn drift(snapshot: &Snapshot, desired: &DesiredRole, synced_at: Instant) -> Drift {
    if snapshot.started <= synced_at {
        return Drift::Unknown;
    }
    let Some(listed) = snapshot.role(&desired.name) else {
        return Drift::Suspected;
    };
    let observed = as_observed(listed, &desired.description, desired.max_session_duration);
    match plan_apply(desired, Some(&observed)) {
        Ok(ops) if ops.is_empty() => Drift::None,
        _ => Drift::Suspected,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::{observed::ListedRole, testing::desired};

    /// The role `desired()` describes, as a listing shows it once it is in sync.
    fn listed_in_sync() -> ListedRole {
        let want = desired();
        ListedRole {
            name: want.name.clone(),
            arn: want.arn.clone(),
            path: want.path.clone(),
            tags: want.tags.clone(),
            trust_policy: want.trust_policy.clone(),
            permissions_boundary: want.permissions_boundary.clone(),
            inline_policies: want
                .inline_policy
                .clone()
                .map(|policy| ("irsa-operator".to_string(), policy))
                .into_iter()
                .collect(),
            managed_policy_arns: want.managed_policy_arns.clone(),
        }
    }

    fn snapshot_after(synced: Instant, roles: Vec<ListedRole>) -> Snapshot {
        Snapshot::new(synced + Duration::from_secs(1), roles, &desired().path)
    }

    #[test]
    fn a_role_listed_as_desired_has_not_drifted() {
        let synced = Instant::now();
        let snapshot = snapshot_after(synced, vec![listed_in_sync()]);
        assert_eq!(drift(&snapshot, &desired(), synced), Drift::None);
    }

    #[test]
    fn a_listing_older_than_the_last_sync_cannot_tell() {
        let synced = Instant::now();
        let snapshot = Snapshot::new(synced, vec![listed_in_sync()], &desired().path);
        assert_eq!(drift(&snapshot, &desired(), synced), Drift::Unknown);
    }

    #[test]
    fn missing_or_changed_roles_are_suspected() {
        let synced = Instant::now();
        let changes: Vec<fn(&mut ListedRole)> = vec![
            |role| role.inline_policies.clear(),
            |role| {
                role.inline_policies
                    .insert("irsa-operator".into(), json!({"Version": "2012-10-17"}));
            },
            |role| {
                role.managed_policy_arns
                    .insert("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
            },
            |role| role.trust_policy = Value::Null,
            |role| role.permissions_boundary = Some("arn:aws:iam::aws:policy/Boundary".into()),
            |role| {
                role.tags.insert("team".into(), "someone-else".into());
            },
            |role| role.path = "/elsewhere/".into(),
        ];
        for (index, change) in changes.into_iter().enumerate() {
            let mut role = listed_in_sync();
            change(&mut role);
            let snapshot = snapshot_after(synced, vec![role]);
            assert_eq!(
                drift(&snapshot, &desired(), synced),
                Drift::Suspected,
                "change {index}"
            );
        }
        let empty = snapshot_after(synced, Vec::new());
        assert_eq!(drift(&empty, &desired(), synced), Drift::Suspected);
    }
}
