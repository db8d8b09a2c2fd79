//! Pure: IAM roles as observed. `iam/` fills these in; `plan` compares them with the
//! desired state.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A role as `GetRole` describes it: everything but its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleSummary {
    pub arn: String,
    /// IAM's unique ID of the role: a role deleted and created again under the same name
    /// has another.
    pub role_id: String,
    pub path: String,
    pub trust_policy: Value,
    pub description: String,
    pub max_session_duration: i32,
    pub permissions_boundary: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A role as observed in IAM, policies included.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRole {
    pub summary: RoleSummary,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
}

/// A role as `GetAccountAuthorizationDetails` lists it: what `GetRole` and the policy
/// reads return, except the description and the maximum session duration. A document
/// that could not be read is `Null`, which never matches a desired one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListedRole {
    pub name: String,
    pub arn: String,
    pub role_id: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub trust_policy: Value,
    pub permissions_boundary: Option<String>,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
}

/// One page of the account's roles, and the marker of the next page if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePage {
    pub roles: Vec<ListedRole>,
    pub next_marker: Option<String>,
}
