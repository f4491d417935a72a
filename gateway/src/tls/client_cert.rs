//! Who the client is by its certificate. On a listener with `tls.client_ca`, a connection's
//! verified client certificate is read once, when its TLS handshake completes; every request
//! on the connection then shares it: plugins read it from [`RequestState::client_cert`], and
//! the backend gets it as `X-Forwarded-Client-Cert` (docs/security.md, "Client certificates").
//!
//! [`RequestState::client_cert`]: crate::plugin::RequestState::client_cert

use boring::asn1::Asn1Object;
use boring::nid::Nid;
use boring::ssl::SslRef;
use boring::x509::{X509NameRef, X509Ref, X509};
use foreign_types::ForeignType;
use http::HeaderValue;
use std::fmt::Write;

/// A client's verified certificate (the leaf), as plugins see it.
///
/// ```
/// use gateway::client_cert::{ClientCert, DistinguishedName};
///
/// fn is_billing(cert: &ClientCert) -> bool {
///     let billing: DistinguishedName = "CN=billing,O=Example".parse().unwrap();
///     cert.subject_dn() == &billing
///         || cert.uris.iter().any(|u| u == "spiffe://example.org/billing")
/// }
/// ```
#[derive(Debug)]
pub struct ClientCert {
    /// The subject as an RFC 4514 string, as OpenSSL writes it (`openssl x509 -nameopt
    /// RFC2253`, and Envoy's `Subject`): the most specific name first (`CN=alice,O=Example`),
    /// `\`-escapes for `,+"\<>;`, and bytes outside printable ASCII as `\XX`.
    pub subject: String,
    /// The URI subject alternative names (a SPIFFE ID, for instance), in certificate order.
    pub uris: Vec<String>,
    /// The DNS subject alternative names, in certificate order.
    pub dns_names: Vec<String>,
    /// The SHA-256 digest of the certificate's DER.
    pub sha256: [u8; 32],
    /// The certificate itself, DER-encoded.
    pub der: Vec<u8>,
    subject_dn: DistinguishedName,
    /// The `X-Forwarded-Client-Cert` value, made once per connection.
    xfcc: HeaderValue,
}

impl ClientCert {
    /// Reads a DER certificate. Portico makes these from the TLS handshake; this is for
    /// plugins' own tests.
    pub fn from_der(der: &[u8]) -> Result<ClientCert, String> {
        let cert = X509::from_der(der).map_err(|e| format!("not a DER certificate: {e}"))?;
        ClientCert::read(&cert)
    }

    /// The client certificate of a finished handshake, if the client sent one and it
    /// verified (with `client_ca`, one that does not verify ends the handshake anyway).
    pub(crate) fn from_handshake(ssl: &SslRef) -> Option<ClientCert> {
        let cert = ssl.peer_certificate()?;
        if ssl.verify_result().is_err() {
            return None;
        }
        ClientCert::read(&cert)
            .map_err(|e| log::warn!("cannot read a client certificate: {e}"))
            .ok()
    }

    fn read(cert: &X509Ref) -> Result<ClientCert, String> {
        let der = cert.to_der().map_err(|e| e.to_string())?;
        let sha256 = boring::sha::sha256(&der);
        let subject = rfc4514(cert.subject_name())?;
        let subject_dn = subject.parse()?;
        let (mut uris, mut dns_names) = (Vec::new(), Vec::new());
        for name in cert.subject_alt_names().iter().flatten() {
            if let Some(u) = name.uri() {
                uris.push(u.to_string());
            } else if let Some(d) = name.dnsname() {
                dns_names.push(d.to_string());
            }
        }
        let xfcc = xfcc_value(&sha256, &subject, &uris, &dns_names)?;
        Ok(ClientCert {
            subject,
            uris,
            dns_names,
            sha256,
            der,
            subject_dn,
            xfcc,
        })
    }

    /// The SHA-256 fingerprint in lowercase hex without separators, as in
    /// `X-Forwarded-Client-Cert`'s `Hash`.
    pub fn fingerprint(&self) -> String {
        hex(&self.sha256)
    }

    /// The subject in the form names are compared in (see [`DistinguishedName`]).
    pub fn subject_dn(&self) -> &DistinguishedName {
        &self.subject_dn
    }

    /// The `X-Forwarded-Client-Cert` value sent to backends.
    pub fn xfcc(&self) -> &HeaderValue {
        &self.xfcc
    }
}

/// Sets `X-Forwarded-Client-Cert` on a request to the backend from a listener with
/// `client_ca`: this connection's certificate, or no header at all. Whatever the client sent
/// under that name is gone either way.
pub(crate) fn set_xfcc(
    upstream: &mut pingora_http::RequestHeader,
    cert: Option<&ClientCert>,
) -> pingora_core::Result<()> {
    match cert {
        Some(c) => upstream.insert_header(XFCC, c.xfcc.clone()),
        None => {
            upstream.remove_header(XFCC);
            Ok(())
        }
    }
}

const XFCC: &str = "X-Forwarded-Client-Cert";

/// Envoy's element: `Hash=..;Subject="..";URI=..;DNS=..`, one `URI=` per URI name and one
/// `DNS=` per DNS name (none when the certificate has none). The subject is always quoted
/// (its own `"` are already `\"` in RFC 4514); a name holding `,` `;` `=` `"` or a space is
/// quoted with `"` escaped, as Envoy's documentation of the header asks.
fn xfcc_value(
    sha256: &[u8; 32],
    subject: &str,
    uris: &[String],
    dns: &[String],
) -> Result<HeaderValue, String> {
    let mut v = format!("Hash={};Subject=\"{subject}\"", hex(sha256));
    for (key, name) in uris
        .iter()
        .map(|u| ("URI", u))
        .chain(dns.iter().map(|d| ("DNS", d)))
    {
        v.push(';');
        v.push_str(key);
        v.push('=');
        if name.contains([',', ';', '=', '"', ' ']) {
            v.push('"');
            v.push_str(&name.replace('"', "\\\""));
            v.push('"');
        } else {
            v.push_str(name);
        }
    }
    HeaderValue::from_str(&v)
        .map_err(|_| format!("a client certificate name cannot be sent in a header: {v:?}"))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `X509_NAME_print_ex`'s `XN_FLAG_RFC2253`: RFC 2253/4514 escaping (also of control
/// characters and bytes above 0x7f), most specific name first, `,` and `+` without spaces,
/// short attribute names, unknown attribute types dumped as `#` and DER hex.
///
/// A name as an RFC 4514 string, written by the TLS library (as `openssl x509 -nameopt
/// RFC2253` and Envoy write it). Its escaping keeps it within visible ASCII.
fn rfc4514(name: &X509NameRef) -> Result<String, String> {
    name.print_ex(boring_sys::XN_FLAG_RFC2253)
        .ok_or_else(|| "cannot print the certificate's subject".into())
}

/// A distinguished name in the form X.509 names are compared in (RFC 5280 section 7.1, as
/// OpenSSL's `X509_NAME_cmp` does): attribute types by their OID, however written (`CN`,
/// `cn`, `commonName` and `2.5.4.3` are one type); values with leading and trailing spaces
/// dropped, inner runs of spaces made one, and ASCII letters compared without case; the
/// values of a multi-valued RDN (`+`) in any order. The order of the RDNs matters.
///
/// ```
/// use gateway::client_cert::DistinguishedName;
///
/// let a: DistinguishedName = "CN=Billing Service,O=Example".parse().unwrap();
/// let b: DistinguishedName = "cn=billing  service, o=EXAMPLE".parse().unwrap();
/// assert_eq!(a, b);
/// let other: DistinguishedName = "O=Example,CN=Billing Service".parse().unwrap();
/// assert_ne!(a, other);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DistinguishedName(Vec<Vec<(Vec<u8>, Value)>>);

/// An attribute value: text in its compared form, or the DER of a `#hex` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Value {
    Text(Vec<u8>),
    Der(Vec<u8>),
}

impl std::str::FromStr for DistinguishedName {
    type Err = String;

    /// Parses an RFC 4514 string (spaces around `,` `+` `=` are allowed). The empty string
    /// is the empty name.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut rdns = Vec::new();
        if s.trim().is_empty() {
            return Ok(DistinguishedName(rdns));
        }
        let mut rdn = Vec::new();
        let mut rest = s.as_bytes();
        loop {
            let (attr, value, sep, after) = attribute(rest)?;
            rdn.push((attr, value));
            rest = after;
            match sep {
                Some(b'+') => continue,
                _ => {
                    rdn.sort();
                    rdns.push(std::mem::take(&mut rdn));
                }
            }
            if sep.is_none() {
                break;
            }
        }
        Ok(DistinguishedName(rdns))
    }
}

/// One `type=value` at the start of `s`: its type's OID, its value, the separator after it
/// (`,` `;` or `+`; `None` at the end) and what follows the separator.
type Parsed<'a> = (Vec<u8>, Value, Option<u8>, &'a [u8]);

fn attribute(s: &[u8]) -> Result<Parsed<'_>, String> {
    let eq = s
        .iter()
        .position(|&b| b == b'=')
        .ok_or_else(|| format!("{:?} is not type=value", String::from_utf8_lossy(s)))?;
    let name = std::str::from_utf8(&s[..eq]).map_err(|_| "an attribute type is not text")?;
    let oid = attribute_type(name.trim())?;
    let mut v = &s[eq + 1..];
    while v.first() == Some(&b' ') {
        v = &v[1..];
    }
    if v.first() == Some(&b'#') {
        let end = v.iter().position(|b| b",+;".contains(b)).unwrap_or(v.len());
        let digits = std::str::from_utf8(&v[1..end]).unwrap_or("").trim_end();
        let der = unhex(digits).ok_or_else(|| format!("bad #hex value in {name}"))?;
        let (sep, after) = separator(&v[end..]);
        return Ok((oid, Value::Der(der), sep, after));
    }
    // The value unescaped; spaces at either end go in `canonical` (escaped or not, as
    // OpenSSL's comparison ignores them too).
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' => match (v.get(i + 1..i + 3).and_then(unhex_pair), v.get(i + 1)) {
                (Some(b), _) => {
                    out.push(b);
                    i += 3;
                }
                (None, Some(&c)) if b" \"#+,;<>\\=".contains(&c) => {
                    out.push(c);
                    i += 2;
                }
                _ => return Err(format!("bad escape in the value of {name}")),
            },
            b',' | b';' | b'+' => break,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let (sep, after) = separator(&v[i..]);
    Ok((oid, Value::Text(canonical(out.into_iter())), sep, after))
}

fn separator(s: &[u8]) -> (Option<u8>, &[u8]) {
    match s.first() {
        Some(&c) => (Some(if c == b';' { b',' } else { c }), trim_start(&s[1..])),
        None => (None, s),
    }
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while s.first() == Some(&b' ') {
        s = &s[1..];
    }
    s
}

/// OpenSSL's canonical form of a name's text (`x509_name_canon`): ASCII lower case, no
/// leading or trailing white space, inner runs of white space as one space.
fn canonical(bytes: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut space = false;
    for b in bytes {
        if b.is_ascii_whitespace() || b == 0x0b {
            space = !out.is_empty();
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(b.to_ascii_lowercase());
        }
    }
    out
}

/// The attribute types met in certificate subjects: their names compare without case. Any
/// other type is written as OpenSSL names it, or as a dotted OID.
const KNOWN_TYPES: &[Nid] = &[
    Nid::COMMONNAME,
    Nid::COUNTRYNAME,
    Nid::LOCALITYNAME,
    Nid::STATEORPROVINCENAME,
    Nid::STREETADDRESS,
    Nid::ORGANIZATIONNAME,
    Nid::ORGANIZATIONALUNITNAME,
    Nid::DOMAINCOMPONENT,
    Nid::USERID,
    Nid::PKCS9_EMAILADDRESS,
    Nid::SERIALNUMBER,
    Nid::SURNAME,
    Nid::GIVENNAME,
    Nid::TITLE,
    Nid::INITIALS,
    Nid::PSEUDONYM,
    Nid::GENERATIONQUALIFIER,
    Nid::DNQUALIFIER,
    Nid::NAME,
    Nid::POSTALCODE,
    Nid::BUSINESSCATEGORY,
];

/// The OID (its DER content bytes) of an attribute type written by name or as a dotted OID.
fn attribute_type(name: &str) -> Result<Vec<u8>, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!("{name:?} is not an attribute type"));
    }
    let known = KNOWN_TYPES.iter().find(|nid| {
        nid.short_name().is_ok_and(|n| n.eq_ignore_ascii_case(name))
            || nid.long_name().is_ok_and(|n| n.eq_ignore_ascii_case(name))
    });
    let name = known.and_then(|nid| nid.short_name().ok()).unwrap_or(name);
    let obj = Asn1Object::from_str(name)
        .map_err(|_| format!("{name:?} is not an attribute type the TLS library knows"))?;
    // SAFETY: the object is alive for the call; its encoding is copied out before it is freed.
    Ok(unsafe {
        let data = boring_sys::OBJ_get0_data(obj.as_ptr());
        std::slice::from_raw_parts(data, boring_sys::OBJ_length(obj.as_ptr())).to_vec()
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2).map(unhex_pair).collect()
}

fn unhex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    match pair {
        [a, b] => Some((digit(*a)? * 16 + digit(*b)?) as u8),
        _ => None,
    }
}

/// A SHA-256 fingerprint as configured: hex, in any case, with or without `:` between bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.trim().chars().filter(|&c| c != ':').collect();
    let bytes = unhex(&digits)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("{s:?} is not a SHA-256 fingerprint (64 hex digits)"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_compare_as_x509_names_do() {
        assert_eq!(dn("CN=billing,O=Example"), dn("cn=Billing, o=EXAMPLE"));
        assert_eq!(
            dn("CN=billing,O=Example"),
            dn("commonName=billing;2.5.4.10=example")
        );
        assert_eq!(dn("CN=a  b"), dn("CN= a b "));
        assert_eq!(dn("CN=x+OU=y,O=z"), dn("OU=y+CN=x,O=z"));
        assert_ne!(dn("CN=billing,O=Example"), dn("O=Example,CN=billing"));
        assert_ne!(dn("CN=billing"), dn("CN=billing,O=Example"));
        assert_ne!(dn("CN=x+OU=y"), dn("CN=x,OU=y"));
        // Escapes: a comma inside a value, a quote, hex pairs (UTF-8), an escaped space.
        assert_eq!(dn(r"CN=Doe\, John,O=Ex"), dn(r"CN=doe\2C john,O=ex"));
        assert_ne!(dn(r"CN=Doe\, John,O=Ex"), dn("CN=Doe,CN=John,O=Ex"));
        assert_eq!(dn(r"CN=caf\C3\A9"), dn("CN=café"));
        assert_eq!(dn(r#"CN=a\"b"#), dn(r#"CN=a\22b"#));
        assert_eq!(dn("UID=#0c03616263"), dn("uid=#0C03616263"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(dn(""), DistinguishedName(vec![]));
        for bad in [
            "CN",
            "CN=a,",
            "=x",
            "CN=a\\",
            "CN=a\\zz",
            "no such=x",
            "bogusType=x",
        ] {
            assert!(bad.parse::<DistinguishedName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_with_or_without_colons() {
        let hex64 = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex64), parse_fingerprint(&colons));
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_certificate_reads_as_openssl_and_envoy_write_it() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        params.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://example.org/billing".try_into().unwrap()),
            rcgen::SanType::DnsName("billing.internal".try_into().unwrap()),
            rcgen::SanType::DnsName("b.internal".try_into().unwrap()),
        ];
        let cert = params.self_signed(&key).unwrap();
        let c = ClientCert::from_der(cert.der()).unwrap();
        assert_eq!(c.subject, r"CN=billing,O=Example\, Inc.");
        assert_eq!(c.subject_dn(), &dn(r"cn=billing, o=example\, inc."));
        assert_eq!(c.uris, ["spiffe://example.org/billing"]);
        assert_eq!(c.dns_names, ["billing.internal", "b.internal"]);
        let hash = hex(&boring::sha::sha256(cert.der()));
        assert_eq!(c.fingerprint(), hash);
        assert_eq!(
            c.xfcc().to_str().unwrap(),
            format!(
                r#"Hash={hash};Subject="CN=billing,O=Example\, Inc.";URI=spiffe://example.org/billing;DNS=billing.internal;DNS=b.internal"#
            )
        );
    }
}
