//! What the layers tell each other about one request, carried in request extensions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use audit::{AuthFailureReason, AuthMethod, Event};

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// TLS 1.3 without client certificates: bearer tokens.
    Public,
    /// TLS 1.3 with a verified client certificate naming a service.
    Mtls,
}

/// Facts about the connection, inserted by the listener before any layer runs.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener.
    pub listener: ListenerKind,
    /// On the mTLS listener: the service named by the verified certificate's SAN.
    pub service: Option<String>,
}

/// An authenticated principal (the `access` crate's). Its id is workforce or system data
/// (`service:<name>`, `admin:<name>`), never PHI.
pub use access::Principal;

/// Role names of a principal, for audit events.
pub fn role_names(p: &Principal) -> Vec<String> {
    p.roles.iter().map(|r| r.as_str().to_string()).collect()
}

/// The outcome of the authenticate layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credential was presented.
    Anonymous,
    /// A credential was presented and verified.
    Authenticated(Principal),
    /// A credential was presented and refused.
    Failed {
        /// The method presented.
        method: AuthMethod,
        /// Why it was refused.
        reason: AuthFailureReason,
    },
}

/// The audit events of one request, collected by the inner layers and written by the audit
/// layer before the response is released.
#[derive(Debug)]
pub struct RequestAudit {
    /// The request's id (a random UUID v4, also sent as `X-Request-Id`).
    pub request_id: String,
    events: Mutex<Vec<Event>>,
}

impl RequestAudit {
    /// A new, empty collector.
    pub fn new(request_id: String) -> Arc<Self> {
        Arc::new(Self {
            request_id,
            events: Mutex::new(Vec::new()),
        })
    }

    /// Adds an event to write.
    pub fn record(&self, event: Event) {
        match self.events.lock() {
            Ok(mut e) => e.push(event),
            Err(poisoned) => poisoned.into_inner().push(event),
        }
    }

    /// Takes the events collected so far.
    pub fn take(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// A random UUID version 4, from the system's CSPRNG.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // aws-lc's RNG does not fail on supported platforms; a zero id would still be unique
    // enough for correlation and carries nothing sensitive.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
