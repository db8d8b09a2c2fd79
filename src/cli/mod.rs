//! Subcommands besides `run` that share the reconciler's pure checks.

pub mod iam_policy;
pub mod manifests;
pub mod validate;
