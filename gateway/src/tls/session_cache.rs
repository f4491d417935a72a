//! The server-side TLS session cache: resumption by session id, for the TLS 1.2 clients that
//! take no session tickets (the others, and every TLS 1.3 client, resume from tickets).

use pingora_core::tls::ssl::SslSession;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// TLS sessions kept for resumption, shared by the listener's threads.
///
/// Each session is kept serialized (as nginx's shared cache does), handed out as a fresh copy
/// per lookup, and kept until it expires (the library checks the lifetime on every lookup) or
/// `capacity` newer ones pushed it out; a library's built-in cache may forget a session whose
/// connection ended without the server's close_notify, which is how most HTTP connections end
/// (the client closes an idle keep-alive connection). The lock is taken once per full
/// handshake that makes a session id and once per resumption by id, never per request.
pub struct SessionCache {
    capacity: usize,
    inner: Mutex<Sessions>,
}

/// Serialized sessions by id, and their ids oldest first.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            capacity,
            inner: Mutex::new(Sessions::default()),
        }
    }

    pub fn insert(&self, session: SslSession) {
        let id = session.id().to_vec();
        let Ok(der) = session.to_der() else { return };
        let mut s = self.inner.lock().unwrap();
        while s.by_id.len() >= self.capacity {
            let Some(oldest) = s.order.pop_front() else {
                break;
            };
            s.by_id.remove(&oldest);
        }
        if s.by_id.insert(id.clone(), der).is_none() {
            s.order.push_back(id);
        }
    }

    pub fn get(&self, id: &[u8]) -> Option<SslSession> {
        let der = self.inner.lock().unwrap().by_id.get(id).cloned()?;
        SslSession::from_der(&der).ok()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every session.
    pub fn clear(&self) {
        let mut s = self.inner.lock().unwrap();
        s.by_id.clear();
        s.order.clear();
    }
}
