//! irsa-operator: turns `PodIamRole` objects into IAM roles for service accounts (IRSA).
//!
//! This crate is the IO around the pure core (`irsa_core`): it watches Kubernetes, calls
//! IAM and writes statuses. ARCHITECTURE.md has the map and the pipeline.
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
