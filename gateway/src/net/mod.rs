//! The wire, below HTTP's meaning: addresses, the PROXY protocol header, the framing of an
//! HTTP/1 request head, the one reading of a request's target, header names as they are spelled
//! on the wire, and what a connection knows across its requests. Nothing here knows about routes, plugins or the config snapshot.

pub mod connection;
pub mod framing;
pub mod ip;
pub mod path;
pub mod proxy_header;
pub mod request_target;
pub mod spelled_name;
