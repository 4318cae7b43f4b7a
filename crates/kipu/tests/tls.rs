//! Real TLS on loopback: certificate verification is always on, an extra CA bundle is how a
//! private CA gets trusted, and a failed handshake is a `Tls` error.
//!
//! The fixtures are a test-only CA certificate (its key was discarded after signing) and a
//! server certificate for `localhost`/127.0.0.1 with its key; they protect nothing.

use std::sync::Arc;

use kipu::query::CensusQuery;
use kipu::{ApiVersion, Client, ClientConfig, Credentials, Error, RetryPolicy};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CA: &[u8] = include_bytes!("fixtures/ca.pem");
const CERT: &[u8] = include_bytes!("fixtures/server.pem");
const KEY: &[u8] = include_bytes!("fixtures/server.key");
const BODY: &str = r#"{"pagination": {"current_page": 1, "total_pages": 1}, "patients": [{"casefile_id": "1:a"}]}"#;

/// A one-response-per-connection HTTPS server: enough to prove the handshake and the request.
async fn https_server_on(ip: &str) -> u16 {
    let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

async fn https_server() -> u16 {
    https_server_on("127.0.0.1").await
}

fn client(base: String, extra_ca: Option<&[u8]>) -> Client {
    let mut builder = ClientConfig::builder(Credentials::new(
        "id",
        SecretString::from("secret"),
        "app",
        ApiVersion::V3,
    ))
    .base_url(base)
    .retry(RetryPolicy::none());
    if let Some(pem) = extra_ca {
        builder = builder.extra_ca_pem(pem.to_vec());
    }
    Client::new(builder.build().unwrap()).unwrap()
}

#[tokio::test]
async fn a_server_signed_by_the_configured_extra_ca_is_trusted() {
    let port = https_server().await;
    let page = client(format!("https://localhost:{port}"), Some(CA))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .expect("TLS handshake with the extra CA succeeds");
    assert_eq!(page.records.len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_as_a_tls_error() {
    let port = https_server().await;
    let err = client(format!("https://localhost:{port}"), None)
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_even_with_the_right_ca() {
    let port = https_server_on("127.0.0.2").await;
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2.
    let err = client(format!("https://127.0.0.2:{port}"), Some(CA))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

/// A server that answers in plain HTTP where the client expects TLS.
async fn plain_http_server() -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_peer_that_does_not_speak_tls_is_a_tls_error() {
    let port = plain_http_server().await;
    let err = client(format!("https://localhost:{port}"), Some(CA))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error_not_a_tls_error() {
    // Bind, learn the port, close: nothing listens there any more.
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(format!("https://localhost:{port}"), Some(CA))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
}
