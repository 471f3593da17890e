//! The health check placement asks of a media node a client reports it lost: `GET /healthz`
//! on the node's host, over HTTPS for a `wss://` node (the fleet) and plain HTTP for a
//! `ws://` one (a local portal's nodes), answered with 2xx within [`PROBE_TIMEOUT`].

use async_trait::async_trait;
use aula_domain::MediaNode;
use aula_domain::ports::NodeProbe;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// How long a node has to answer. A killed node refuses at once; a hung one accepts the
/// connection (the kernel does) and never answers, so this is what finding it out costs
/// the client waiting for a new grant. A healthy node answers in milliseconds; one slower
/// than this under load loses its room to another node, which costs one reconnect.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Health checks over HTTP(S), with the system's root certificates.
pub struct HttpProbe {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpProbe {
    /// Fails when the system's root certificates cannot be read.
    pub fn new() -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpProbe {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }
}

#[async_trait]
impl NodeProbe for HttpProbe {
    #[tracing::instrument(skip_all, fields(node = %node.id))]
    async fn answers(&self, node: &MediaNode) -> bool {
        let Some(uri) = node.health_url().and_then(|u| u.parse().ok()) else {
            tracing::warn!("the node's address names no health check");
            return false;
        };
        match tokio::time::timeout(PROBE_TIMEOUT, self.client.get(uri)).await {
            Ok(Ok(res)) => res.status().is_success(),
            Ok(Err(e)) => {
                tracing::info!(error = %aula_domain::ErrorChain(&e), "the node's health check failed");
                false
            }
            Err(_) => {
                tracing::info!("the node's health check was not answered in time");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aula_domain::{Expiry, NodeId, Timestamp};
    use tokio::net::TcpListener;

    fn node_at(address: String) -> MediaNode {
        MediaNode {
            id: NodeId::parse("00000000-0000-0000-0000-000000000001").expect("an id"),
            address,
            capacity: 10,
            load: 0,
            reserved: 0,
            last_heartbeat: Timestamp::from_secs(0),
            expires_at: Expiry::at(Timestamp::from_secs(15)),
        }
    }

    #[tokio::test]
    async fn a_node_that_serves_its_health_check_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let port = listener.local_addr().expect("address").port();
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let probe = HttpProbe::new().expect("roots");
        assert!(
            probe
                .answers(&node_at(format!("ws://127.0.0.1:{port}/media")))
                .await
        );
    }

    #[tokio::test]
    async fn a_killed_node_and_a_hung_node_do_not_answer() {
        let probe = HttpProbe::new().expect("roots");
        // Killed: nothing listens on its port any more.
        let gone = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let port = gone.local_addr().expect("address").port();
        drop(gone);
        assert!(
            !probe
                .answers(&node_at(format!("ws://127.0.0.1:{port}/media")))
                .await,
            "a killed node"
        );
        // Hung: the kernel accepts the connection, the process never reads it.
        let hung = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let port = hung.local_addr().expect("address").port();
        assert!(
            !probe
                .answers(&node_at(format!("ws://127.0.0.1:{port}/media")))
                .await,
            "a hung node"
        );
        drop(hung);
    }
}
