//! The server-side TLS session cache: resumption by session id, for the TLS 1.2 clients that
//! take no session tickets (the others, and every TLS 1.3 client, resume from tickets).

use boring::ssl::SslInfoCallbackMode;
use foreign_types::{ForeignType, ForeignTypeRef};
use pingora_core::tls::ssl::{SslRef, SslSession, SslVersion};
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

    /// The listener's info callback: keeps the session of a full TLS 1.2 handshake that has a
    /// session id at the one moment the client's Finished has been verified and the server's is
    /// not yet written.
    ///
    /// The library's own hook (the new-session callback) runs only after the server's Finished
    /// is on the wire, and a client that reconnects at once (sslyze does, from five threads)
    /// could ask for the session before it was kept, and get a full handshake. BoringSSL names
    /// that moment by the handshake state the client's Finished leads to; a resumed handshake
    /// passes that state too, before the client's Finished, and is skipped (its session is kept
    /// already). A session given a ticket has no id and is not kept.
    pub fn on_handshake_step(&self, ssl: &SslRef, mode: SslInfoCallbackMode) {
        if mode != SslInfoCallbackMode::ACCEPT_LOOP
            || ssl.state_string_long() != "TLS server send_server_finished"
            || ssl.session_reused()
            || ssl.version2() != Some(SslVersion::TLS1_2)
        {
            return;
        }
        let Some(session) = ssl.session() else { return };
        let id = session.id();
        if id.is_empty() {
            return;
        }
        // Until the handshake ends the library marks its session not resumable, and its usual
        // serialization writes a placeholder for such a session; the ticket form is the whole
        // session but its id, which `get` puts back.
        let mut bytes = std::ptr::null_mut();
        let mut len = 0;
        // SAFETY: the session is live for the call; on success the library hands over `bytes`,
        // freed below with its own allocator.
        if unsafe {
            boring_sys::SSL_SESSION_to_bytes_for_ticket(session.as_ptr(), &mut bytes, &mut len)
        } != 1
        {
            return;
        }
        // SAFETY: `bytes` holds `len` bytes written by the library.
        let der = unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec();
        // SAFETY: allocated by the library above, not used after.
        unsafe { boring_sys::OPENSSL_free(bytes.cast()) };
        self.insert(id.to_vec(), der);
    }

    fn insert(&self, id: Vec<u8>, der: Vec<u8>) {
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
        let session = SslSession::from_der(&der).ok()?;
        // SAFETY: the session was just made here and is not shared; the library copies the id
        // (at most 32 bytes, as every id it made is).
        let set =
            unsafe { boring_sys::SSL_SESSION_set1_id(session.as_ptr(), id.as_ptr(), id.len()) };
        (set == 1).then_some(session)
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
