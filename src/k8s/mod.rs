//! Thin Kubernetes IO: the ServiceAccount annotations, the AWS config ConfigMap and Events.

pub mod aws_config;
pub mod events;
pub mod issuer;
pub mod listed;
pub mod service_account;
pub mod watch_list;

/// Every write the operator makes to Kubernetes uses this field manager.
pub const FIELD_MANAGER: &str = "irsa-operator";
