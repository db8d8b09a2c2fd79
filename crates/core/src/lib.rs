//! The pure core of irsa-operator: every decision, none of the IO. Given the custom
//! resources (`irsa_api`) and what the operator observed, it says what the role should be
//! (`desired`), what to change (`plan`), whether it is allowed (`guardrail`, `admission`),
//! who owns what (`ownership`, `sa_owner`, `orphans`) and what to report (`status`). The
//! operator crate feeds it observations and carries out its answers.
//!
//! This crate depends on no client, no runtime and no clock of its own: time comes in as
//! an argument.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod account;
pub mod admission;
pub mod chain;
pub mod config;
pub mod deny_list_policy;
pub mod desired;
pub mod failure;
pub mod glob;
pub mod guardrail;
pub mod iam_policy;
pub mod iam_role;
pub mod index;
pub mod naming;
pub mod oidc;
pub mod orphans;
pub mod ownership;
pub mod per_object;
pub mod plan;
pub mod pod_identity;
pub mod policy;
pub mod reason;
pub mod restart;
pub mod sa_owner;
pub mod snapshot;
pub mod status;
pub mod sync_check;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trust;
pub mod write_log;
