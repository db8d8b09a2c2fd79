//! irsa-operator: turns `PodIamRole` objects into IAM roles for service accounts (IRSA).
//!
//! One reconcile runs `desired` (pure) -> observe (IO) -> `plan` (pure) -> execute (IO)
//! -> annotate (IO) -> `status` (pure + one patch). The pure steps hold the logic and
//! most of the tests; `iam`, `k8s` and `reconcile` are thin IO glue.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod accounts;
pub mod cli;
pub mod config;
pub mod controller;
pub mod doctor;
pub mod http;
pub mod iam;
pub mod k8s;
pub mod leader;
pub mod listing;
pub mod metrics;
pub mod orphan_monitor;
pub mod provider;
pub mod reconcile;
pub mod telemetry;
pub mod thumbprint;
pub mod undecodable;
pub mod webhook;
