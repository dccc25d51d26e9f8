//! The validating admission webhook: rules the schema cannot express (quotas, the
//! licence, unique host names, protected objects), served over HTTPS by every replica,
//! independent of leader election.
//!
//! [`review`] holds the rules as pure functions, [`handlers`] the AdmissionReview
//! endpoints and the reads they need, [`certificate`] the serving certificate.

pub mod certificate;
pub mod handlers;
pub mod review;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use kube::Client;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use self::{
    certificate::{CertResolver, CertificateError, CertificateManager},
    handlers::{ClusterView, KubeView, Reviewer},
};
use crate::{config::Config, provider::setup::operator_namespace};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest open connections may take to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed certificate check before the next attempt.
const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Why the webhook could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No serving certificate could be provided at start.
    #[error("webhook serving certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The listening socket could not be opened.
    #[error("binding the webhook server to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A webhook task panicked.
    #[error("webhook task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running webhook server with its certificate maintenance.
pub struct Webhook {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

impl Webhook {
    /// Provides the serving certificate (creating it in `SelfSigned` mode), binds
    /// `webhook.bindAddress:port` and serves until [`Webhook::stop`]. Reads go through
    /// the Kubernetes API at review time.
    pub async fn start(client: Client, config: Arc<Config>) -> Result<Webhook, WebhookError> {
        let view: Arc<dyn ClusterView> = Arc::new(KubeView::new(client.clone()));
        Webhook::start_with_view(client, config, view).await
    }

    /// As [`Webhook::start`], with the rules reading through `view`.
    pub async fn start_with_view(client: Client, config: Arc<Config>, view: Arc<dyn ClusterView>) -> Result<Webhook, WebhookError> {
        let settings = config.webhook.clone();
        let resolver = Arc::new(CertResolver::default());
        let manager = CertificateManager::new(client, settings.clone(), operator_namespace(&config), resolver.clone());
        let first_check = manager.maintain().await?;
        let addr = SocketAddr::new(settings.bind_address, settings.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| WebhookError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| WebhookError::Bind { addr, source })?;
        let acceptor = tls_acceptor(resolver)?;
        let router = handlers::router(Arc::new(Reviewer::new(view, config)));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, acceptor, router, shutdown_rx.clone()));
        let maintenance = tokio::spawn(maintain(manager, first_check, shutdown_rx));
        tracing::info!(addr = %local_addr, "serving the admission webhook");
        Ok(Webhook { local_addr, shutdown, server, maintenance })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open requests finish (up to a few seconds) and ends the
    /// certificate maintenance.
    pub async fn stop(self) -> Result<(), WebhookError> {
        let _ = self.shutdown.send(true);
        self.server.await?;
        self.maintenance.await?;
        Ok(())
    }
}

fn tls_acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until shutdown; each handshake runs in its own task so that a
/// slow client never holds up others.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, router: axum::Router, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting a webhook connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "webhook TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "webhook TLS handshake timed out"),
            };
            let service = TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("webhook connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Runs certificate maintenance passes until shutdown.
async fn maintain(manager: CertificateManager, first: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut wait = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        wait = match manager.maintain().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate check failed; serving the current certificate and retrying");
                RETRY_INTERVAL
            }
        };
    }
}
