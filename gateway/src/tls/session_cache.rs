//! The server-side TLS session cache: resumption by session id, for the TLS 1.2 clients that
//! take no session tickets (the others, and every TLS 1.3 client, resume from tickets).

use boring::ex_data::Index;
use boring::ssl::{SslContext, SslContextBuilder};
use foreign_types::{ForeignType, ForeignTypeRef};
use pingora_core::tls::ssl::{SslRef, SslSession};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, CStr};
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};

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

    /// Keeps the session of a full TLS 1.2 handshake that has a session id, called when the
    /// client's Finished has been verified and the server's is not yet written (see
    /// [`keep_sessions`]). A session given a ticket has no id and is not kept.
    fn keep(&self, ssl: &SslRef) {
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

    /// Forgets every session.
    pub fn clear(&self) {
        let mut s = self.inner.lock().unwrap();
        s.by_id.clear();
        s.order.clear();
    }
}

/// Where a listener's TLS context keeps its session cache, for the info callback.
fn cache_index() -> Index<SslContext, Arc<SessionCache>> {
    static INDEX: OnceLock<Index<SslContext, Arc<SessionCache>>> = OnceLock::new();
    *INDEX.get_or_init(|| SslContext::new_ex_index().expect("a TLS ex_data index"))
}

/// Fills `cache` from the listener's full TLS 1.2 handshakes.
///
/// The library's own hook (the new-session callback) runs only after the server's Finished is
/// on the wire, and a client that reconnects at once (sslyze does, from five threads) could
/// ask for the session before it was kept, and get a full handshake. The info callback is
/// told of every step of a handshake; the step the client's Finished leads to is the moment
/// to keep the session. It is a plain C function rather than `boring`'s closure wrapper,
/// which looks its closure up under a global lock at each of a handshake's ~20 steps
/// (9k instructions per handshake, measured).
pub(super) fn keep_sessions(context: &mut SslContextBuilder, cache: Arc<SessionCache>) {
    context.set_ex_data(cache_index(), cache);
    // SAFETY: the context is the one being built, not yet shared; the callback is a plain
    // function that outlives it.
    unsafe { boring_sys::SSL_CTX_set_info_callback(context.as_ptr(), Some(on_handshake_step)) };
}

/// The info callback (see [`keep_sessions`]).
unsafe extern "C" fn on_handshake_step(ssl: *const boring_sys::SSL, mode: c_int, _: c_int) {
    // Cheapest tests first: this runs at every step of every handshake, TLS 1.3 ones included
    // (the version reads as TLS 1.2 until it is negotiated). A resumed handshake passes the
    // same step too, before the client's Finished, and its session is kept already.
    // SAFETY (all calls): the library hands a live connection for the call's duration.
    if mode != boring_sys::SSL_CB_ACCEPT_LOOP as c_int
        || unsafe { boring_sys::SSL_version(ssl) } != boring_sys::TLS1_2_VERSION as c_int
        || unsafe { boring_sys::SSL_session_reused(ssl) } != 0
        || unsafe { CStr::from_ptr(boring_sys::SSL_state_string_long(ssl)) }.to_bytes()
            != b"TLS server send_server_finished"
    {
        return;
    }
    let ssl = unsafe { SslRef::from_ptr(ssl.cast_mut()) };
    if let Some(cache) = ssl.ssl_context().ex_data(cache_index()) {
        cache.keep(ssl);
    }
}
