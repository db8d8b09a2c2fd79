//! Subcommands besides `run` that share the reconciler's pure checks, and the name the
//! command line goes by (`irsa-operator`, or `kubectl irsa` as a kubectl plugin).

pub mod iam_policy;
pub mod manifests;
pub mod plugin;
pub mod validate;
