//! The answers Portico makes itself instead of a backend's, as one type: each knows its
//! status, the message its body gives, and what the error log says about it.

use crate::plugin::Response;
use pingora_core::{Error, ErrorType};
use std::fmt;

/// A request Portico answers itself rather than proxying it (docs/security.md, "After an
/// answer Portico made itself").
///
/// A phase returns one as its error (`?` turns it into Pingora's error, which carries it), and
/// the failure phase answers with its status and message; or a phase answers with it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalError {
    /// 400: a malformed request (its framing, target, host, credentials, or a trusted
    /// proxy's `X-Forwarded-For`); the reason goes to the error log, not to the client.
    BadRequest(&'static str),
    /// 414: a request line over `server.limits.max_request_line_bytes`.
    RequestLineTooLong,
    /// 431: more header fields than `server.limits.max_header_count`.
    TooManyHeaders,
    /// 431: a request head over `server.limits.max_header_bytes`.
    HeadTooLarge,
    /// 413: a body over `max_body_bytes` (the route's, or `server.limits`').
    BodyTooLarge,
    /// 404: no route matches.
    NoRoute,
    /// 502: the route has no upstream (and no plugin answered).
    NoUpstream,
    /// 503: no backend of the pool can take the request; the answer says `Retry-After: 1`.
    NoHealthyBackend,
}

impl LocalError {
    pub fn status(self) -> u16 {
        match self {
            LocalError::BadRequest(_) => 400,
            LocalError::RequestLineTooLong => 414,
            LocalError::TooManyHeaders | LocalError::HeadTooLarge => 431,
            LocalError::BodyTooLarge => 413,
            LocalError::NoRoute => 404,
            LocalError::NoUpstream => 502,
            LocalError::NoHealthyBackend => 503,
        }
    }

    /// What the answer's body says.
    pub fn message(self) -> &'static str {
        match self {
            LocalError::BadRequest(_) => "bad request",
            LocalError::RequestLineTooLong => "request line too long",
            LocalError::TooManyHeaders | LocalError::HeadTooLarge => {
                "request header fields too large"
            }
            LocalError::BodyTooLarge => "request body too large",
            LocalError::NoRoute => "no route matches this request",
            LocalError::NoUpstream => "this route has no upstream",
            LocalError::NoHealthyBackend => "no healthy backend",
        }
    }

    /// What the error log says.
    fn detail(self) -> &'static str {
        match self {
            LocalError::BadRequest(reason) => reason,
            LocalError::TooManyHeaders => "too many header fields",
            LocalError::HeadTooLarge => "request head too large",
            other => other.message(),
        }
    }

    /// The answer: a short body naming the error and the request id, so a user can quote it.
    pub fn response(self, request_id: &str) -> Response {
        let resp = error_response(self.status(), self.message(), request_id);
        match self {
            LocalError::NoHealthyBackend => resp.with_header("Retry-After", "1"),
            _ => resp,
        }
    }

    /// The local error a Pingora error carries, if it carries one.
    pub fn of(e: &Error) -> Option<LocalError> {
        e.root_cause().downcast_ref::<LocalError>().copied()
    }
}

/// A short body naming the error and the request id, so a user can quote it.
pub fn error_response(status: u16, message: &str, request_id: &str) -> Response {
    Response::text(
        status,
        format!("{status} {message}\nrequest id: {request_id}\n"),
    )
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for LocalError {}

impl From<LocalError> for Box<Error> {
    fn from(e: LocalError) -> Self {
        Error::because(ErrorType::HTTPStatus(e.status()), e.detail(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pingora_error_carries_the_local_error_through_added_context() {
        let e: Box<Error> = LocalError::HeadTooLarge.into();
        let e = e.more_context("backend 127.0.0.1:1");
        assert_eq!(LocalError::of(&e), Some(LocalError::HeadTooLarge));
        assert_eq!(LocalError::of(&Error::new(ErrorType::ReadError)), None);
        let resp = LocalError::NoHealthyBackend.response("abc");
        assert_eq!(resp.status, 503);
        assert_eq!(&resp.body[..], b"503 no healthy backend\nrequest id: abc\n");
        assert!(resp
            .headers
            .iter()
            .any(|(k, v)| k == "Retry-After" && v == "1"));
    }
}
