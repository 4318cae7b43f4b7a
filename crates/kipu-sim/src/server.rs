//! The accept loop: one hyper connection per TCP connection, so an injected reset can close a
//! connection without writing a single response byte.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::{SimConfig, SimError, Simulator, api::ResetConnection};

/// A simulator serving on a local port. Dropping it does not stop it; call
/// [`RunningSim::shutdown`].
pub struct RunningSim {
    addr: SocketAddr,
    sim: Arc<Simulator>,
    credentials: (String, SecretString, String),
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSim {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL for a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(access_id, secret_key, app_id)` it accepts (synthetic test credentials).
    pub fn credentials(&self) -> (String, SecretString, String) {
        self.credentials.clone()
    }

    /// Every patient canary (see [`Simulator::canaries`]).
    pub fn canaries(&self) -> Vec<String> {
        self.sim.canaries()
    }

    /// The simulator state (for canaries of one patient, casefile ids, ...).
    pub fn simulator(&self) -> &Arc<Simulator> {
        &self.sim
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the accept loop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) async fn spawn(config: SimConfig) -> Result<RunningSim, SimError> {
    let sim = Arc::new(Simulator::new(&config)?);
    let addr = config
        .addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&sim), stopped));
    Ok(RunningSim {
        addr,
        sim,
        credentials: (config.access_id, config.secret_key, config.app_id),
        stop,
        task,
    })
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug)]
struct InjectedReset;

impl fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

async fn accept_loop(
    listener: TcpListener,
    sim: Arc<Simulator>,
    mut stopped: watch::Receiver<bool>,
) {
    let router = crate::router(sim);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(_) => continue,
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move {
                        let response = match router.oneshot(req.map(axum::body::Body::new)).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        };
                        if response.extensions().get::<ResetConnection>().is_some() {
                            return Err(InjectedReset);
                        }
                        Ok(response)
                    }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
