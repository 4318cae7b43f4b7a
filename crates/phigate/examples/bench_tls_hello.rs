//! The baseline of `bench/gateway.sh`: a bare axum "hello" over the same TLS 1.3 stack as the
//! gateway (rustls with aws-lc-rs, tokio-rustls, hyper-util's HTTP/1.1+2 auto builder), with no
//! authentication, rate limiting, authorization, scrubbing or audit.
//!
//! Usage: `bench_tls_hello <cert.pem> <key.pem> <addr>`; prints `listening <addr>` when ready.
//! `bench_tls_hello --plain <addr>` serves the same app over plain HTTP/1.1 on one
//! current-thread runtime: the floor of any hyper-based server on one CPU, which
//! `bench/kipu_fetch.sh` compares the Kipu simulator with.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, addr] = args.as_slice()
        && flag == "--plain"
    {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(plain(addr));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tls(&args))
}

fn hello() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "hello" }))
}

async fn plain(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let app = hello();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn tls(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [_, cert, key, addr] = args else {
        return Err(
            "usage: bench_tls_hello <cert.pem> <key.pem> <addr> | bench_tls_hello --plain <addr>"
                .into(),
        );
    };
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = hello();
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
