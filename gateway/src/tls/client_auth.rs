//! How a listener checks its clients' certificates (`tls.client_ca`, `tls.client_auth`):
//! the CAs, and whether a certificate is required. Part of the listener's certificate store
//! (`tls.rs`), so a reload replaces it with the certificates, and applied to each handshake.

use crate::config::ClientAuthMode;
use boring::error::ErrorStack;
use boring::ssl::{SslRef, SslVerifyMode};
use boring::stack::Stack;
use boring::x509::store::{X509Store, X509StoreBuilder};
use boring::x509::{X509Name, X509};
use foreign_types::ForeignType;
use std::path::Path;

/// How a listener checks client certificates (`tls.client_ca`, `tls.client_auth`).
///
/// Applied to each connection in the certificate callback rather than to the listener's
/// TLS context, which is built once: so a reload that changes the CA file (its path or
/// only its contents) or the mode applies to the next handshake.
pub struct ClientAuth {
    /// The CAs that client certificates must chain to.
    store: X509Store,
    /// Their subjects (DER), sent to the client to help it pick a certificate.
    names: Vec<Vec<u8>>,
    required: bool,
    /// SHA-256 of the CA file and the mode, so that a reload can tell a change.
    pub(crate) fingerprint: [u8; 32],
}

impl ClientAuth {
    /// Reads the CA file (PEM, one certificate or more).
    pub fn load(path: &Path, mode: ClientAuthMode) -> Result<ClientAuth, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cas = X509::stack_from_pem(&pem)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{} holds no PEM certificate", path.display()))?;
        let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        for ca in cas {
            names.push(ca.subject_name().to_der().map_err(|e| e.to_string())?);
            store.add_cert(ca).map_err(|e| e.to_string())?;
        }
        let required = mode == ClientAuthMode::Required;
        let mut hasher = boring::sha::Sha256::new();
        hasher.update(&pem);
        hasher.update(&[required as u8]);
        Ok(ClientAuth {
            store: store.build(),
            names,
            required,
            fingerprint: hasher.finish(),
        })
    }

    /// Asks this connection's client for a certificate and checks it against the CAs.
    /// `optional` is SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT: a client may
    /// send none, but one it sends must verify.
    pub(crate) fn apply(&self, ssl: &mut SslRef) -> Result<(), ErrorStack> {
        // SAFETY: the store is alive (borrowed from self); the reference taken here is owned
        // by the `X509Store` made from it, which hands it to the connection, which frees it.
        let store = unsafe {
            if boring_sys::X509_STORE_up_ref(self.store.as_ptr()) != 1 {
                return Err(ErrorStack::get());
            }
            X509Store::from_ptr(self.store.as_ptr())
        };
        ssl.set_verify_cert_store(store)?;
        let mut list = Stack::new()?;
        for n in &self.names {
            list.push(X509Name::from_der(n)?)?;
        }
        ssl.set_client_ca_list(list);
        let mode = if self.required {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        } else {
            SslVerifyMode::PEER
        };
        ssl.set_verify(mode);
        Ok(())
    }
}
