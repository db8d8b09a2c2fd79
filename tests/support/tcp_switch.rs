//! A TCP forwarder in front of the test bed's API server that can be switched off, to
//! give the operator (and only the operator) an API server outage.

use std::{net::SocketAddr, path::PathBuf};

use kube::config::Kubeconfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use super::Testbed;

pub struct TcpSwitch {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl TcpSwitch {
    /// Forwards to the API server of `bed`'s kubeconfig.
    pub async fn start(bed: &Testbed) -> Self {
        let upstream = bed.kube_config.cluster_url.authority().unwrap().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, state) = watch::channel(true);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped: the connection is refused in effect
                }
                let mut state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up, accept }
    }

    /// Cuts every open connection and refuses new ones (`false`), or lets them through.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// A copy of the test bed's kubeconfig whose server is this switch.
    pub fn kubeconfig(&self, bed: &Testbed) -> PathBuf {
        let path = bed.vars["KUBECONFIG"].clone();
        let mut config = Kubeconfig::read_from(&path).unwrap();
        for cluster in &mut config.clusters {
            if let Some(cluster) = cluster.cluster.as_mut() {
                cluster.server = Some(format!("https://{}", self.addr));
            }
        }
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kubeconfig-{}", self.addr.port()));
        std::fs::write(&out, serde_yaml::to_string(&config).unwrap()).unwrap();
        out
    }
}

impl Drop for TcpSwitch {
    fn drop(&mut self) {
        self.set_up(false);
        self.accept.abort();
    }
}
