//! Pure: the account's roles as one bulk listing saw them, and what a drift check can
//! conclude from it. A listing only tells whether a role may have drifted; it is never
//! the authority for a write (IAM is eventually consistent): a role that looks different
//! is read afresh, role by role, before anything changes.
//!
//! Its memory is bounded: of each role under the role path it keeps a fingerprint of what
//! the plan compares, its ownership tags, and the names a deletion needs; never the
//! documents, which a listing of 10,000 roles would hold by the tens of megabytes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Instant,
};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    desired::{DesiredRole, INLINE_POLICY_NAME},
    iam_role::{ListedRole, ObservedRole, RoleSummary},
    ownership::OWNERSHIP_TAG_PREFIX,
    policy::normalize,
};

/// What a snapshot keeps of one role.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRole {
    /// Of the normalized trust policy, boundary, tags, inline policies and attachments.
    fingerprint: [u8; 16],
    /// The `irsa.dev/` tags: whose role it is, for deletions and orphans.
    pub ownership_tags: Vec<(String, String)>,
    pub inline_policy_names: Vec<String>,
    pub managed_policy_arns: Vec<String>,
}

impl KeptRole {
    fn new(listed: ListedRole) -> Self {
        let fingerprint = fingerprint(
            &listed.trust_policy,
            listed.permissions_boundary.as_deref(),
            &listed.tags,
            listed.inline_policies.iter(),
            &listed.managed_policy_arns,
        );
        let mut ownership_tags: Vec<(String, String)> = listed
            .tags
            .into_iter()
            .filter(|(key, _)| key.starts_with(OWNERSHIP_TAG_PREFIX))
            .collect();
        ownership_tags.shrink_to_fit();
        Self {
            fingerprint,
            ownership_tags,
            inline_policy_names: listed.inline_policies.into_keys().collect(),
            managed_policy_arns: listed.managed_policy_arns.into_iter().collect(),
        }
    }

    pub fn ownership_tags(&self) -> BTreeMap<String, String> {
        self.ownership_tags.iter().cloned().collect()
    }

    /// The role as `plan_delete` reads it: whose it is, and what it holds. Documents
    /// are not kept, and deleting needs none.
    pub fn for_deletion(&self) -> ObservedRole {
        ObservedRole {
            summary: RoleSummary {
                arn: String::new(),
                path: String::new(),
                trust_policy: Value::Null,
                description: String::new(),
                max_session_duration: 0,
                permissions_boundary: None,
                tags: self.ownership_tags(),
            },
            inline_policies: (self.inline_policy_names.iter())
                .map(|name| (name.clone(), Value::Null))
                .collect(),
            managed_policy_arns: self.managed_policy_arns.iter().cloned().collect(),
        }
    }
}

/// A role that `mode: Observe` PodIamRoles use, as listed: its ARN and trust policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedListing {
    pub arn: String,
    pub trust_policy: Value,
}

/// The roles under the operator's role path, and those PodIamRoles observe, from one
/// pass over the account.
#[derive(Debug)]
pub struct Snapshot {
    /// When the listing started: what a sync finished before then wrote is in it.
    pub started: Instant,
    role_path: String,
    roles: HashMap<String, KeptRole>,
    /// The names observed when the listing started; their roles, where listed.
    observed: HashMap<String, Option<ObservedListing>>,
}

impl Snapshot {
    /// `observed`: the names of the roles `mode: Observe` PodIamRoles use, wherever they are.
    pub fn new(started: Instant, role_path: &str, observed: BTreeSet<String>) -> Self {
        Self {
            started,
            role_path: role_path.to_string(),
            roles: HashMap::new(),
            observed: observed.into_iter().map(|name| (name, None)).collect(),
        }
    }

    /// Keeps what it needs of one page: the roles under the role path (no PodIamRole of
    /// this operator has another) and the observed ones. The rest is dropped at once.
    pub fn add(&mut self, page: Vec<ListedRole>) {
        for role in page {
            if let Some(observed) = self.observed.get_mut(&role.name) {
                *observed = Some(ObservedListing {
                    arn: role.arn.clone(),
                    trust_policy: role.trust_policy.clone(),
                });
            }
            if role.path == self.role_path {
                self.roles.insert(role.name.clone(), KeptRole::new(role));
            }
        }
    }

    /// The observed role of that name, if it was asked for and listed.
    pub fn observed(&self, name: &str) -> Option<&ObservedListing> {
        self.observed.get(name)?.as_ref()
    }

    /// The role of that name, if the listing has it under the role path.
    pub fn role(&self, name: &str) -> Option<&KeptRole> {
        self.roles.get(name)
    }

    pub fn roles(&self) -> impl Iterator<Item = (&str, &KeptRole)> {
        self.roles.iter().map(|(name, role)| (name.as_str(), role))
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
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

/// Compares `desired` with the listing, for a role last synced at `synced_at`: in sync
/// when the plan would find nothing to write. A listing has no description or maximum
/// session duration; those are taken as last synced.
pub fn drift(snapshot: &Snapshot, desired: &DesiredRole, synced_at: Instant) -> Drift {
    if snapshot.started <= synced_at {
        return Drift::Unknown;
    }
    let Some(listed) = snapshot.role(&desired.name) else {
        return Drift::Suspected;
    };
    let want = fingerprint(
        &desired.trust_policy,
        desired.permissions_boundary.as_deref(),
        &desired.tags,
        desired
            .inline_policy
            .iter()
            .map(|document| (&INLINE_POLICY_NAME, document)),
        &desired.managed_policy_arns,
    );
    if listed.fingerprint == want {
        Drift::None
    } else {
        Drift::Suspected
    }
}

/// Equal for two roles exactly when `plan_apply` would find nothing to change between
/// them, save description and session duration: documents are normalized as the plan
/// compares them, and every tag, policy and attachment counts (an extra one is removed).
fn fingerprint<'a, N: AsRef<str> + 'a>(
    trust_policy: &Value,
    permissions_boundary: Option<&str>,
    tags: &BTreeMap<String, String>,
    inline_policies: impl Iterator<Item = (&'a N, &'a Value)>,
    managed_policy_arns: &BTreeSet<String>,
) -> [u8; 16] {
    let mut hash = Sha256::new();
    feed(&mut hash, &normalize(trust_policy));
    match permissions_boundary {
        Some(arn) => feed_str(&mut hash, b'b', arn),
        None => hash.update(b"n"),
    }
    for (key, value) in tags {
        feed_str(&mut hash, b't', key);
        feed_str(&mut hash, b'v', value);
    }
    let inline: BTreeMap<&str, &Value> = inline_policies
        .map(|(name, document)| (name.as_ref(), document))
        .collect();
    for (name, document) in inline {
        feed_str(&mut hash, b'i', name);
        feed(&mut hash, &normalize(document));
    }
    for arn in managed_policy_arns {
        feed_str(&mut hash, b'm', arn);
    }
    let digest = hash.finalize();
    let mut fingerprint = [0; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    fingerprint
}

/// A JSON value, unambiguously: type-tagged, length-prefixed, object keys sorted.
fn feed(hash: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hash.update(b"z"),
        Value::Bool(b) => hash.update(if *b { b"T" } else { b"F" }),
        Value::Number(n) => feed_str(hash, b'#', &n.to_string()),
        Value::String(s) => feed_str(hash, b'"', s),
        Value::Array(items) => {
            hash.update(b"[");
            hash.update((items.len() as u64).to_be_bytes());
            items.iter().for_each(|item| feed(hash, item));
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            hash.update(b"{");
            hash.update((sorted.len() as u64).to_be_bytes());
            for (key, item) in sorted {
                feed_str(hash, b'k', key);
                feed(hash, item);
            }
        }
    }
}

fn feed_str(hash: &mut Sha256, tag: u8, text: &str) {
    hash.update([tag]);
    hash.update((text.len() as u64).to_be_bytes());
    hash.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        iam_role::ListedRole,
        plan::plan_delete,
        testing::{desired, in_sync, owner},
    };

    /// The role `desired()` describes, as a listing shows it once it is in sync, with
    /// IAM's own spelling of the documents.
    fn listed_in_sync() -> ListedRole {
        let want = desired();
        let have = in_sync(&want);
        ListedRole {
            name: want.name,
            arn: have.summary.arn,
            path: have.summary.path,
            tags: have.summary.tags,
            trust_policy: have.summary.trust_policy,
            permissions_boundary: have.summary.permissions_boundary,
            inline_policies: have.inline_policies,
            managed_policy_arns: have.managed_policy_arns,
        }
    }

    fn snapshot_after(synced: Instant, roles: Vec<ListedRole>) -> Snapshot {
        let mut snapshot = Snapshot::new(
            synced + Duration::from_secs(1),
            &desired().path,
            BTreeSet::new(),
        );
        snapshot.add(roles);
        snapshot
    }

    #[test]
    fn a_role_listed_as_desired_has_not_drifted() {
        let synced = Instant::now();
        let listed = listed_in_sync();
        let respelled = &listed.inline_policies[INLINE_POLICY_NAME];
        assert_ne!(Some(respelled), desired().inline_policy.as_ref());
        let snapshot = snapshot_after(synced, vec![listed]);
        assert_eq!(drift(&snapshot, &desired(), synced), Drift::None);
    }

    #[test]
    fn a_listing_older_than_the_last_sync_cannot_tell() {
        let synced = Instant::now();
        let mut snapshot = Snapshot::new(synced, &desired().path, BTreeSet::new());
        snapshot.add(vec![listed_in_sync()]);
        assert_eq!(drift(&snapshot, &desired(), synced), Drift::Unknown);
    }

    #[test]
    fn missing_or_changed_roles_are_suspected() {
        let synced = Instant::now();
        let changes: Vec<fn(&mut ListedRole)> = vec![
            |role| role.inline_policies.clear(),
            |role| {
                role.inline_policies
                    .insert(INLINE_POLICY_NAME.into(), json!({"Version": "2012-10-17"}));
            },
            |role| {
                role.inline_policies
                    .insert("extra".into(), desired().inline_policy.unwrap());
            },
            |role| {
                role.managed_policy_arns
                    .insert("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
            },
            |role| role.trust_policy = Value::Null,
            |role| role.trust_policy["Statement"][0]["Effect"] = json!("Deny"),
            |role| role.permissions_boundary = Some("arn:aws:iam::aws:policy/Boundary".into()),
            |role| {
                role.tags.insert("team".into(), "someone-else".into());
            },
            |role| {
                role.tags
                    .insert("irsa.dev/uid".into(), "someone-else".into());
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

    #[test]
    fn a_changed_spec_is_suspected_against_a_listing_in_sync() {
        let synced = Instant::now();
        let snapshot = snapshot_after(synced, vec![listed_in_sync()]);
        let changes: Vec<fn(&mut DesiredRole)> = vec![
            |want| want.inline_policy = None,
            |want| {
                want.managed_policy_arns
                    .insert("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
            },
            |want| want.permissions_boundary = Some("arn:aws:iam::aws:policy/B".into()),
            |want| {
                want.tags.insert("team".into(), "payments".into());
            },
            |want| want.trust_policy["Statement"][0]["Effect"] = json!("Deny"),
        ];
        for (index, change) in changes.into_iter().enumerate() {
            let mut want = desired();
            change(&mut want);
            assert_eq!(
                drift(&snapshot, &want, synced),
                Drift::Suspected,
                "change {index}"
            );
        }
    }

    #[test]
    fn a_kept_role_holds_what_deleting_it_needs_and_no_document() {
        let mut listed = listed_in_sync();
        listed.tags.insert("team".into(), "payments".into());
        listed
            .managed_policy_arns
            .insert("arn:aws:iam::aws:policy/A".into());
        let kept = KeptRole::new(listed);
        assert_eq!(kept.ownership_tags(), owner().tags());
        assert_eq!(kept.inline_policy_names, [INLINE_POLICY_NAME]);
        let ops = plan_delete(&desired().name, &owner(), Some(&kept.for_deletion())).unwrap();
        let described: Vec<String> = ops.iter().map(|op| op.describe()).collect();
        assert_eq!(
            described,
            [
                "DeleteRolePolicy irsa-operator",
                "DetachRolePolicy arn:aws:iam::aws:policy/A",
                "DeleteRole"
            ]
        );
    }

    #[test]
    fn observed_roles_are_kept_wherever_they_are_and_only_they() {
        let elsewhere = |name: &str| ListedRole {
            name: name.into(),
            arn: format!("arn:aws:iam::111122223333:role/{name}"),
            path: "/".into(),
            trust_policy: json!({"Version": "2012-10-17"}),
            ..ListedRole::default()
        };
        let wanted = BTreeSet::from(["made-by-hand".to_string(), "not-there".to_string()]);
        let mut snapshot = Snapshot::new(Instant::now(), &desired().path, wanted);
        snapshot.add(vec![elsewhere("made-by-hand"), elsewhere("unrelated")]);
        let kept = snapshot.observed("made-by-hand").expect("listed");
        assert_eq!(kept.arn, "arn:aws:iam::111122223333:role/made-by-hand");
        assert_eq!(kept.trust_policy, json!({"Version": "2012-10-17"}));
        assert_eq!(snapshot.observed("not-there"), None);
        assert_eq!(snapshot.observed("unrelated"), None);
        assert!(snapshot.is_empty(), "none under the role path");
    }
}
