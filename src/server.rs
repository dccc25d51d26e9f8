//! The operator's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::sync::watch;

use crate::{operator::Health, telemetry::Metrics};

struct ServerState {
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    health: Health,
}

/// The router serving health and metrics. `/healthz` fails while a controller has
/// stopped taking its queued work (`reconcile.stallTimeout`), so that the kubelet
/// restarts an operator that no longer reconciles.
pub fn router(metrics: Metrics, ready: watch::Receiver<bool>, health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(Arc::new(ServerState { metrics, ready, health }))
}

async fn healthz(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    let stalled = s.health.stalled();
    if stalled.is_empty() {
        (StatusCode::OK, "ok".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: {}", stalled.join("; ")))
    }
}

async fn readyz(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    if *s.ready.borrow() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") }
}

async fn metrics_handler(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started("tenant"));
        metrics.reconcile_failed("tenant", "ApiError");
        let (ready_tx, ready) = watch::channel(false);
        let app = router(metrics, ready, Health::default());
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        ready_tx.send(true).unwrap();
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, body) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("cx_operator_reconciles_total{controller=\"tenant\"} 1"), "{body}");
        assert!(body.contains("cx_operator_reconcile_errors_total{controller=\"tenant\",reason=\"ApiError\"} 1"), "{body}");
        assert!(body.contains("cx_operator_reconcile_duration_seconds_count{controller=\"tenant\"} 1"), "{body}");
    }
}
