//! The webhook's HTTPS endpoints. `POST /mutate`: decodes the pod's AdmissionReview,
//! looks its ServiceAccount up in the cache, answers, and records latency and outcome.
//! `POST /validate`: reads what the PodIamRole's checks need from the API server and
//! answers with the reconciler's own verdict.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use k8s_openapi::{
    api::core::v1::{Namespace, Pod},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, ResourceExt,
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use serde::de::DeserializeOwned;
use tokio::{net::TcpListener, time::Instant};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{cache::ServiceAccountCache, validate};
use crate::metrics::Metrics;
use irsa_api::{PodIamRole, PodIamRoleGuardrail};
use irsa_core::{
    admission::review,
    config::OperatorConfig,
    pod_identity::{
        InjectionDefaults,
        review::{self, Outcome},
    },
    status,
};

/// A client that opens a connection and stalls must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Gives pods their identity (`/mutate`).
pub struct Admitter {
    pub cache: ServiceAccountCache,
    pub defaults: InjectionDefaults,
    pub metrics: Arc<Metrics>,
}

/// Refuses PodIamRoles the operator would refuse (`/validate`).
pub struct Validator {
    pub client: Client,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
}

/// The routes of the webhooks that are on.
pub fn router(admitter: Option<Admitter>, validator: Option<Validator>) -> Router {
    let mut router = Router::new();
    if let Some(admitter) = admitter {
        let routes = Router::new().route("/mutate", post(mutate));
        router = router.merge(routes.with_state(Arc::new(admitter)));
    }
    if let Some(validator) = validator {
        let routes = Router::new().route("/validate", post(validate));
        router = router.merge(routes.with_state(Arc::new(validator)));
    }
    router
}

/// Binds and serves in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    warn!(%error, "webhook accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return debug!(%error, "webhook TLS handshake failed"),
                    Err(_) => return debug!("webhook TLS handshake timed out"),
                };
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                if let Err(error) = served {
                    debug!(%error, "webhook connection ended");
                }
            });
        }
    });
    Ok(bound)
}

fn decode<K: kube::Resource + DeserializeOwned>(
    body: &[u8],
) -> Result<AdmissionRequest<K>, String> {
    serde_json::from_slice::<AdmissionReview<K>>(body)
        .map_err(|e| e.to_string())
        .and_then(|review| review.try_into().map_err(|_| "no request".to_string()))
}

/// An undecodable review gets a 400: the API server then applies the failure policy.
fn bad_request(error: String) -> Response {
    warn!(%error, "undecodable AdmissionReview");
    (StatusCode::BAD_REQUEST, error).into_response()
}

fn reply(response: AdmissionResponse) -> Response {
    match serde_json::to_vec(&response.into_review()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn mutate(State(admitter): State<Arc<Admitter>>, body: Bytes) -> Response {
    let started = Instant::now();
    let request: AdmissionRequest<Pod> = match decode(&body) {
        Ok(request) => request,
        Err(error) => {
            admitter
                .metrics
                .record_admission(started.elapsed(), Outcome::Invalid.label());
            return bad_request(error);
        }
    };
    let annotations = match review::service_account(&request) {
        Some((namespace, name)) => admitter.cache.annotations(&namespace, &name).await,
        None => None,
    };
    let (response, outcome) = review::respond(&request, annotations.as_ref(), &admitter.defaults);
    admitter
        .metrics
        .record_admission(started.elapsed(), outcome.label());
    debug!(uid = %request.uid, outcome = outcome.label(), "admitted a pod");
    reply(response)
}

async fn validate(State(validator): State<Arc<Validator>>, body: Bytes) -> Response {
    let request: AdmissionRequest<PodIamRole> = match decode(&body) {
        Ok(request) => request,
        Err(error) => {
            validator.metrics.record_validation("error");
            return bad_request(error);
        }
    };
    let Some(object) = validate::to_check(&request, Time(jiff::Timestamp::now())) else {
        validator.metrics.record_validation("skipped");
        return reply(AdmissionResponse::from(&request));
    };
    match validator.verdict(&object).await {
        Ok(verdict) => {
            let outcome = if verdict.is_ok() { "allowed" } else { "denied" };
            validator.metrics.record_validation(outcome);
            debug!(uid = %request.uid, outcome, "validated a PodIamRole");
            reply(validate::respond(&request, verdict))
        }
        // A 500 leaves the decision to the configuration's failurePolicy; the status
        // still refuses what slips through.
        Err(error) => {
            warn!(%error, "cannot read what the PodIamRole's checks need");
            validator.metrics.record_validation("error");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

impl Validator {
    /// Reads the guardrails, the namespace's labels and (for quotas only) its
    /// PodIamRoles fresh, so a guardrail applied a moment ago already counts.
    async fn verdict(
        &self,
        object: &PodIamRole,
    ) -> Result<Result<(), status::Outcome>, kube::Error> {
        let namespace = object.namespace().unwrap_or_default();
        let guardrails = Api::<PodIamRoleGuardrail>::all(self.client.clone())
            .list(&Default::default())
            .await?
            .items;
        let labels = Api::<Namespace>::all(self.client.clone())
            .get_metadata(&namespace)
            .await?
            .labels()
            .clone();
        let quotas = guardrails
            .iter()
            .any(|guardrail| guardrail.spec.max_roles_per_namespace.is_some());
        let roles = if quotas {
            let api = Api::<PodIamRole>::namespaced(self.client.clone(), &namespace);
            api.list(&Default::default()).await?.items
        } else {
            Vec::new()
        };
        Ok(review(object, &guardrails, &labels, &roles, &self.config).map(drop))
    }
}
