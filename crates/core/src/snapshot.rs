//! Pure: the account's roles as one bulk listing saw them, and what a drift check can
//! conclude from it. A listing only tells whether a role may have drifted; it is never
//! the authority for a write (IAM is eventually consistent): a role that looks different
//! is read afresh before anything changes. Its policies alone may come from the listing,
//! its tags (whose it is) never do.
//!
//! Its memory is bounded: of each role under the role path it keeps a fingerprint of what
//! the plan compares, its RoleId and ownership tags, and the names a deletion needs, with
//! a fingerprint of each inline policy; never the documents, which a listing of 10,000
//! roles would hold by the tens of megabytes.

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

type Fingerprint = [u8; 16];

/// What a snapshot keeps of one role.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRole {
    /// Of the normalized trust policy, boundary, tags, inline policies and attachments.
    fingerprint: Fingerprint,
    pub role_id: String,
    /// The `irsa.dev/` tags: whose role it is, for deletions and orphans.
    pub ownership_tags: Vec<(String, String)>,
    /// Each inline policy's name and the fingerprint of its normalized document.
    pub inline_policies: Vec<(String, Fingerprint)>,
    pub managed_policy_arns: Vec<String>,
}

impl KeptRole {
    fn new(listed: ListedRole) -> Self {
        let inline_policies: Vec<(String, Fingerprint)> = (listed.inline_policies.into_iter())
            .map(|(name, document)| (name, document_fingerprint(&document)))
            .collect();
        let fingerprint = fingerprint(
            &listed.trust_policy,
            listed.permissions_boundary.as_deref(),
            &listed.tags,
            inline_policies
                .iter()
                .map(|(name, kept)| (name.as_str(), *kept)),
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
            role_id: listed.role_id,
            ownership_tags,
            inline_policies,
            managed_policy_arns: listed.managed_policy_arns.into_iter().collect(),
        }
    }

    pub fn ownership_tags(&self) -> BTreeMap<String, String> {
        self.ownership_tags.iter().cloned().collect()
    }

    /// The role as `plan_delete` reads it: whose it is, and what it holds. Documents
    /// are not kept, and deleting needs none.
    pub fn for_deletion(&self) -> ObservedRole {
        let summary = RoleSummary {
            arn: String::new(),
            role_id: self.role_id.clone(),
            path: String::new(),
            trust_policy: Value::Null,
            description: String::new(),
            max_session_duration: 0,
            permissions_boundary: None,
            tags: self.ownership_tags(),
        };
        self.with_summary(summary, |_, _| Value::Null)
    }

    /// The role as `plan_apply` reads it: `summary` as `GetRole` just returned it, with the
    /// listed policies. Documents are not kept: an inline policy whose fingerprint is that
    /// of `desired`'s document reads as that document, any other as `Null`, which matches
    /// no desired one, so the plan writes it.
    fn for_update(&self, summary: RoleSummary, desired: &DesiredRole) -> ObservedRole {
        let wanted = (desired.inline_policy.as_ref())
            .map(|document| (document, document_fingerprint(document)));
        self.with_summary(summary, |name, kept| match &wanted {
            Some((document, want)) if name == INLINE_POLICY_NAME && want == kept => {
                (*document).clone()
            }
            _ => Value::Null,
        })
    }

    fn with_summary(
        &self,
        summary: RoleSummary,
        document: impl Fn(&str, &Fingerprint) -> Value,
    ) -> ObservedRole {
        ObservedRole {
            summary,
            inline_policies: (self.inline_policies.iter())
                .map(|(name, kept)| (name.clone(), document(name, kept)))
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
        (desired.inline_policy.iter())
            .map(|document| (INLINE_POLICY_NAME, document_fingerprint(document))),
        &desired.managed_policy_arns,
    );
    if listed.fingerprint == want {
        Drift::None
    } else {
        Drift::Suspected
    }
}

/// The role `GetRole` just returned (`summary`) as `plan_apply` reads it, its policies
/// and attachments taken from the listing instead of read one by one. `None` when the
/// listing cannot stand for them, and they are read: it started before the operator's
/// last write to the role (`last_write`), so it misses that write; it lacks the role; or
/// it lists another role of that name (another RoleId: deleted and created again since).
pub fn observed_from_listing(
    snapshot: &Snapshot,
    desired: &DesiredRole,
    summary: &RoleSummary,
    last_write: Instant,
) -> Option<ObservedRole> {
    if snapshot.started <= last_write {
        return None;
    }
    let listed = snapshot.role(&desired.name)?;
    let same_role = !summary.role_id.is_empty() && listed.role_id == summary.role_id;
    same_role.then(|| listed.for_update(summary.clone(), desired))
}

/// Equal for two roles exactly when `plan_apply` would find nothing to change between
/// them, save description and session duration: documents are normalized as the plan
/// compares them, and every tag, policy and attachment counts (an extra one is removed).
fn fingerprint<'a>(
    trust_policy: &Value,
    permissions_boundary: Option<&str>,
    tags: &BTreeMap<String, String>,
    inline_policies: impl Iterator<Item = (&'a str, Fingerprint)>,
    managed_policy_arns: &BTreeSet<String>,
) -> Fingerprint {
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
    let inline: BTreeMap<&str, Fingerprint> = inline_policies.collect();
    for (name, document) in inline {
        feed_str(&mut hash, b'i', name);
        hash.update(document);
    }
    for arn in managed_policy_arns {
        feed_str(&mut hash, b'm', arn);
    }
    truncated(hash)
}

/// Equal for two policy documents exactly when the plan takes them as equal.
fn document_fingerprint(document: &Value) -> Fingerprint {
    let mut hash = Sha256::new();
    feed(&mut hash, &normalize(document));
    truncated(hash)
}

fn truncated(hash: Sha256) -> Fingerprint {
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
        plan::{IamOp, plan_apply, plan_delete},
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
            role_id: have.summary.role_id,
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
        assert_eq!(kept.inline_policies.len(), 1);
        assert_eq!(kept.inline_policies[0].0, INLINE_POLICY_NAME);
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

    /// `GetRole`'s answer for the role of `listed_in_sync()`.
    fn summary() -> RoleSummary {
        in_sync(&desired()).summary
    }

    /// The writes `plan_apply` makes for `want`, the policies taken from `snapshot`.
    fn planned_from_listing(
        snapshot: &Snapshot,
        want: &DesiredRole,
        written: Instant,
    ) -> Vec<String> {
        let observed = observed_from_listing(snapshot, want, &summary(), written)
            .expect("the listing stands for the policies");
        let ops = plan_apply(want, Some(&observed)).unwrap();
        ops.iter().map(IamOp::describe).collect()
    }

    #[test]
    fn each_changed_aspect_costs_its_writes_only_with_the_policies_listed() {
        let written = Instant::now();
        let snapshot = snapshot_after(written, vec![listed_in_sync()]);
        type Change = fn(&mut DesiredRole);
        let changes: Vec<(Change, &[&str])> = vec![
            (|_| {}, &[]),
            (
                |want| {
                    want.inline_policy.as_mut().unwrap()["Statement"][0]["Action"] = json!("s3:*")
                },
                &["PutRolePolicy irsa-operator"],
            ),
            (
                |want| want.inline_policy = None,
                &["DeleteRolePolicy irsa-operator"],
            ),
            (
                |want| {
                    want.managed_policy_arns
                        .insert("arn:aws:iam::aws:policy/A".into());
                },
                &["AttachRolePolicy arn:aws:iam::aws:policy/A"],
            ),
            (
                |want| want.trust_policy["Statement"][0]["Effect"] = json!("Deny"),
                &["UpdateAssumeRolePolicy"],
            ),
            (
                |want| {
                    want.tags.insert("team".into(), "payments".into());
                },
                &["TagRole"],
            ),
        ];
        for (index, (change, writes)) in changes.into_iter().enumerate() {
            let mut want = desired();
            change(&mut want);
            assert_eq!(
                planned_from_listing(&snapshot, &want, written),
                writes,
                "change {index}"
            );
        }
    }

    #[test]
    fn listed_extras_and_unreadable_documents_are_repaired() {
        let written = Instant::now();
        let mut listed = listed_in_sync();
        listed.inline_policies.insert("hand-made".into(), json!({}));
        listed
            .inline_policies
            .insert(INLINE_POLICY_NAME.into(), Value::Null);
        listed
            .managed_policy_arns
            .insert("arn:aws:iam::aws:policy/Admin".into());
        let snapshot = snapshot_after(written, vec![listed]);
        assert_eq!(
            planned_from_listing(&snapshot, &desired(), written),
            [
                "DeleteRolePolicy hand-made",
                "PutRolePolicy irsa-operator",
                "DetachRolePolicy arn:aws:iam::aws:policy/Admin"
            ]
        );
    }

    #[test]
    fn the_policies_are_read_when_the_listing_cannot_stand_for_them() {
        let written = Instant::now();
        let snapshot = snapshot_after(written, vec![listed_in_sync()]);
        let want = desired();
        let from_listing = |snapshot: &Snapshot, summary: &RoleSummary, written| {
            observed_from_listing(snapshot, &want, summary, written)
        };
        assert!(from_listing(&snapshot, &summary(), written).is_some());
        // It started before the last write, or with it: it may miss it.
        let later = snapshot.started + Duration::from_secs(1);
        assert_eq!(from_listing(&snapshot, &summary(), later), None);
        assert_eq!(from_listing(&snapshot, &summary(), snapshot.started), None);
        // Deleted and created again under the same name since the listing.
        let mut recreated = summary();
        recreated.role_id = "AROAEXAMPLEOTHER".into();
        assert_eq!(from_listing(&snapshot, &recreated, written), None);
        let mut no_id = summary();
        no_id.role_id.clear();
        assert_eq!(from_listing(&snapshot, &no_id, written), None);
        // Not listed (created since, or under another path).
        let empty = snapshot_after(written, Vec::new());
        assert_eq!(from_listing(&empty, &summary(), written), None);
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
