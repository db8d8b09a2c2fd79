//! Subcommands besides `run` that share the reconciler's pure checks.

pub mod manifests;
pub mod validate;
