//! irsa-operator: turns `PodIamRole` objects into IAM roles for service accounts (IRSA).
//!
//! One reconcile runs `desired` (pure) -> observe (IO) -> `plan` (pure) -> execute (IO)
//! -> annotate (IO) -> `status` (pure + one patch). The pure steps hold the logic and
//! most of the tests; `iam`, `k8s` and `reconcile` are thin IO glue.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod accounts;
pub mod admission;
pub mod admission_policy;
pub mod chain;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod doctor;
pub mod failure;
pub mod glob;
pub mod guardrail;
pub mod http;
pub mod iam;
pub mod iam_policy;
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod naming;
pub mod observed;
pub mod observer;
pub mod oidc;
pub mod orphan_monitor;
pub mod orphans;
pub mod ownership;
pub mod plan;
pub mod policy;
pub mod policy_schema;
pub mod provider;
pub mod reason;
pub mod reconcile;
pub mod restart;
pub mod sa_owner;
pub mod snapshot;
pub mod status;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod thumbprint;
pub mod trust;
pub mod undecodable;
pub mod webhook;
