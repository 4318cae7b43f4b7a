//! The accept loops: TCP → TLS 1.3 handshake (tokio-rustls) → HTTP/1.1 or HTTP/2 (hyper-util's
//! auto builder, chosen by ALPN) → the axum router, with the connection's facts
//! ([`ConnInfo`]) in every request's extensions.
//!
//! Limits: at most `max_connections` connections per listener (more are closed at once), ten
//! seconds for the TLS handshake and for an HTTP/1.1 request head (slow-loris), 100
//! concurrent HTTP/2 streams per connection.
//!
//! On the mTLS listener, rustls has already refused any client without a certificate chaining
//! to the configured CA; a verified certificate without a service SAN in the trust domain is
//! refused here by closing the connection. Both refusals are audited as failed mTLS
//! authentication attempts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use audit::{AuthFailureReason, AuthMethod, AuthenticationAttempt, Event, Outcome};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::reqctx::{ConnInfo, ListenerKind};
use super::state::AppState;
use super::tls::{ReloadableTls, service_from_cert};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one listener until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    tls: Arc<ReloadableTls>,
    app: Router,
    st: Arc<AppState>,
) {
    let slots = Arc::new(Semaphore::new(st.config.server.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let st = st.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(tcp, peer, kind, tls, app, st).await;
        });
    }
}

async fn audit_mtls_failure(st: &AppState, peer: SocketAddr) {
    let event = Event::Authentication(AuthenticationAttempt {
        method: AuthMethod::Mtls,
        principal: None,
        source_address: peer.ip().to_string(),
        outcome: Outcome::Failure,
        failure_reason: Some(AuthFailureReason::UntrustedCertificate),
        request_id: None,
    });
    if let Err(e) = st.audit.append(event).await {
        tracing::error!(error = %e, "audit log write failed for a refused client certificate");
    }
}

fn is_certificate_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)
            )
        })
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    tls: Arc<ReloadableTls>,
    app: Router,
    st: Arc<AppState>,
) {
    let configs = tls.current();
    let config = match kind {
        ListenerKind::Public => configs.public.clone(),
        ListenerKind::Mtls => configs.mtls.clone(),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            st.metrics.tls_handshake_failure();
            if kind == ListenerKind::Mtls && is_certificate_error(&e) {
                audit_mtls_failure(&st, peer).await;
            }
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            st.metrics.tls_handshake_failure();
            return;
        }
    };
    let service = match kind {
        ListenerKind::Public => None,
        ListenerKind::Mtls => {
            let (_, conn) = stream.get_ref();
            let name = conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| service_from_cert(cert, &st.config.tls.trust_domain));
            match name {
                Some(n) => Some(n),
                None => {
                    audit_mtls_failure(&st, peer).await;
                    tracing::warn!(
                        "client certificate names no service in the trust domain; connection closed"
                    );
                    return;
                }
            }
        }
    };
    let info = ConnInfo {
        peer,
        listener: kind,
        service,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let app = app.clone();
        async move { app.oneshot(req.map(axum::body::Body::new)).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
