//! `irsa_operator_podiamroles`: PodIamRoles counted by readiness at scrape time.

use std::sync::{Arc, RwLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{family::Family, gauge::Gauge},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Readiness {
    /// The Ready condition's status: `True`, `False` or `Unknown`.
    pub ready: String,
    pub reason: String,
    /// `true` while the object waits for its cleanup (it has a deletion timestamp).
    pub deleting: bool,
}

/// The readiness of every PodIamRole this replica reconciles.
pub type ReadySource = Box<dyn Fn() -> Vec<Readiness> + Send + Sync>;

/// Counts PodIamRoles by their Ready condition at scrape time, from the leader's caches:
/// a gauge that needs no bookkeeping when objects come and go.
#[derive(Default, Clone)]
pub(super) struct ReadyCollector {
    pub(super) source: Arc<RwLock<Option<ReadySource>>>,
}

impl std::fmt::Debug for ReadyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyCollector")
    }
}

impl Collector for ReadyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let family = Family::<Readiness, Gauge>::default();
        if let Some(source) = self.source.read().expect("never poisoned").as_ref() {
            for readiness in source() {
                family.get_or_create(&readiness).inc();
            }
        }
        let metric = encoder.encode_descriptor(
            "podiamroles",
            "PodIamRoles by their Ready condition's status and reason, and whether they wait for cleanup; reported by the leader only",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}
