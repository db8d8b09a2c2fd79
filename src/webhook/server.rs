//! The webhook's HTTPS endpoint, `POST /mutate`: decodes the AdmissionReview, looks
//! the pod's ServiceAccount up in the cache, answers, and records latency and outcome.

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
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use tokio::{net::TcpListener, time::Instant};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{
    admission::{self, Outcome},
    cache::ServiceAccountCache,
    mutate::InjectionDefaults,
};
use crate::metrics::Metrics;

/// A client that opens a connection and stalls must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Admitter {
    pub cache: ServiceAccountCache,
    pub defaults: InjectionDefaults,
    pub metrics: Arc<Metrics>,
}

/// Binds and serves in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    admitter: Arc<Admitter>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let router = Router::new()
        .route("/mutate", post(mutate))
        .with_state(admitter);
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

async fn mutate(State(admitter): State<Arc<Admitter>>, body: Bytes) -> Response {
    let started = Instant::now();
    // An undecodable review gets a 400: the API server then applies the failure policy.
    let request: AdmissionRequest<Pod> = match serde_json::from_slice::<AdmissionReview<Pod>>(&body)
        .map_err(|e| e.to_string())
        .and_then(|review| review.try_into().map_err(|_| "no request".to_string()))
    {
        Ok(request) => request,
        Err(error) => {
            warn!(%error, "undecodable AdmissionReview");
            admitter
                .metrics
                .record_admission(started.elapsed(), Outcome::Invalid.label());
            return (StatusCode::BAD_REQUEST, error).into_response();
        }
    };
    let annotations = match admission::service_account(&request) {
        Some((namespace, name)) => admitter.cache.annotations(&namespace, &name).await,
        None => None,
    };
    let (response, outcome) =
        admission::respond(&request, annotations.as_ref(), &admitter.defaults);
    admitter
        .metrics
        .record_admission(started.elapsed(), outcome.label());
    debug!(uid = %request.uid, outcome = outcome.label(), "admitted a pod");
    match serde_json::to_vec(&response.into_review()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
