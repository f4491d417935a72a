//! One access-log line, formatted by hand into a reused buffer: the fields in their
//! documented order, JSON-escaped, the timestamp in RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use gateway::RequestState;
use std::io::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One access-log line. Field order is the order written.
pub(super) struct Record<'a> {
    started_at: SystemTime,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    backend: Option<&'a str>,
    bytes_sent: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    /// With `server.tracing`: the trace id and the server span id.
    trace: Option<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    pub(super) fn new(method: &'a str, path: &'a str, state: &'a RequestState) -> Self {
        Record {
            started_at: state.started_at,
            request_id: &state.request_id,
            client_ip: state.client_ip.to_canonical(),
            method,
            host: &state.host,
            path,
            status: state.status,
            route: state.route.as_deref(),
            upstream: state.upstream.as_deref(),
            backend: state.backend.as_deref(),
            bytes_sent: state.bytes_sent,
            duration_ms: millis(state.elapsed()),
            upstream_ms: state.upstream_time.map(millis),
            trace: state.trace.as_ref().map(|(t, s)| (t.as_str(), s.as_str())),
        }
    }

    /// The JSON line, written straight into one buffer sized for it: this runs for every
    /// request, and going through serde_json's serializer, chrono's formatter and a
    /// `String` per address cost about as much as the other four common plugins together.
    /// Strings are escaped and numbers formatted exactly as serde_json does.
    pub(super) fn to_line(&self) -> Vec<u8> {
        let strings = [self.request_id, self.method, self.host, self.path];
        let names = [self.route, self.upstream, self.backend];
        let len = 256
            + strings.iter().map(|s| s.len()).sum::<usize>()
            + names.iter().flatten().map(|s| s.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(b"{\"ts\":\"");
        write_timestamp(&mut out, self.started_at);
        out.extend_from_slice(b"\",\"request_id\":");
        write_str(&mut out, self.request_id);
        out.extend_from_slice(b",\"client_ip\":\"");
        write_ip(&mut out, self.client_ip);
        out.extend_from_slice(b"\",\"method\":");
        write_str(&mut out, self.method);
        out.extend_from_slice(b",\"host\":");
        write_str(&mut out, self.host);
        out.extend_from_slice(b",\"path\":");
        write_str(&mut out, self.path);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"route\":");
        write_opt_str(&mut out, self.route);
        out.extend_from_slice(b",\"upstream\":");
        write_opt_str(&mut out, self.upstream);
        out.extend_from_slice(b",\"backend\":");
        write_opt_str(&mut out, self.backend);
        out.extend_from_slice(b",\"bytes_sent\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.bytes_sent).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        write_f64(&mut out, self.duration_ms);
        out.extend_from_slice(b",\"upstream_ms\":");
        match self.upstream_ms {
            Some(ms) => write_f64(&mut out, ms),
            None => out.extend_from_slice(b"null"),
        }
        if let Some((trace_id, span_id)) = self.trace {
            out.extend_from_slice(b",\"trace_id\":");
            write_str(&mut out, trace_id);
            out.extend_from_slice(b",\"span_id\":");
            write_str(&mut out, span_id);
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// Milliseconds with microsecond precision: enough to tell a cache hit from a slow backend
/// without printing float noise.
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A JSON string, escaped as serde_json escapes: `"`, `\\` and control characters only.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every value needs no escape: one pass without an early exit (which the compiler
    // vectorises) finds that out, and the value is copied whole.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A number as serde_json writes an `f64` (shortest round-trip form; `null` if not finite).
fn write_f64(out: &mut Vec<u8>, value: f64) {
    // Writing a float into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// The address without the formatter for IPv4, the common case; IPv6 through `Display`.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let mut digits = itoa::Buffer::new();
            out.extend_from_slice(digits.format(a).as_bytes());
            for octet in [b, c, d] {
                out.push(b'.');
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `2026-01-02T03:04:05.678Z`: RFC 3339, UTC, milliseconds truncated, as chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes it. Computed from the Unix time
/// (days to a civil date, Howard Hinnant's algorithm) instead of chrono's general
/// formatter; a time before 1970 or after 9999 is left to chrono.
fn write_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let since_epoch = match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < 253_402_300_800 => d, // 10000-01-01T00:00:00Z
        _ => {
            let ts = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true);
            out.extend_from_slice(ts.as_bytes());
            return;
        }
    };
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    let mut ts = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            ts[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, second_of_day / 3600);
    put(14, 2, second_of_day / 60 % 60);
    put(17, 2, second_of_day % 60);
    put(20, 3, u64::from(since_epoch.subsec_millis()));
    out.extend_from_slice(&ts);
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv6Addr};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_record_has_exactly_the_documented_fields() {
        let ip: IpAddr = Ipv6Addr::from(0xffff_0a00_0001u128).into(); // ::ffff:10.0.0.1
        let mut state = RequestState::new(Arc::from("https"), ip);
        state.request_id = "abc".into();
        state.host = "api.example.com".into();
        state.route = Some(Arc::from("api"));
        state.status = 200;
        state.bytes_sent = 12;
        state.upstream_time = Some(Duration::from_micros(1500));
        let line = Record::new("GET", "/v1/users", &state).to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut expected = vec![
            "ts",
            "request_id",
            "client_ip",
            "method",
            "host",
            "path",
            "status",
            "route",
            "upstream",
            "backend",
            "bytes_sent",
            "duration_ms",
            "upstream_ms",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert_eq!(v["route"], "api");
        assert_eq!(v["upstream"], serde_json::Value::Null);
        assert_eq!(v["upstream_ms"], 1.5);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    /// The line as it was written before the hand-written writer: serde_json over a struct
    /// of the same fields, chrono for the time.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        ts: String,
        request_id: &'a str,
        client_ip: String,
        method: &'a str,
        host: &'a str,
        path: &'a str,
        status: u16,
        route: Option<&'a str>,
        upstream: Option<&'a str>,
        backend: Option<&'a str>,
        bytes_sent: u64,
        duration_ms: f64,
        upstream_ms: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        span_id: Option<&'a str>,
    }

    fn reference(r: &Record) -> Vec<u8> {
        let mut line = serde_json::to_vec(&Reference {
            ts: DateTime::<Utc>::from(r.started_at).to_rfc3339_opts(SecondsFormat::Millis, true),
            request_id: r.request_id,
            client_ip: r.client_ip.to_string(),
            method: r.method,
            host: r.host,
            path: r.path,
            status: r.status,
            route: r.route,
            upstream: r.upstream,
            backend: r.backend,
            bytes_sent: r.bytes_sent,
            duration_ms: r.duration_ms,
            upstream_ms: r.upstream_ms,
            trace_id: r.trace.map(|t| t.0),
            span_id: r.trace.map(|t| t.1),
        })
        .unwrap();
        line.push(b'\n');
        line
    }

    #[test]
    fn a_line_is_byte_for_byte_what_serde_json_and_chrono_wrote() {
        let odd = "q\"b\\s/\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} é 日本 🦀";
        let mut state = RequestState::new(Arc::from("https"), Ipv6Addr::LOCALHOST.into());
        state.request_id = odd.into();
        state.host = "api.example.com".into();
        let cases: Vec<Record> = vec![
            Record::new("GET", "/", &state),
            Record {
                started_at: UNIX_EPOCH,
                request_id: "",
                client_ip: "10.0.0.1".parse().unwrap(),
                method: "PATCH",
                host: odd,
                path: odd,
                status: 65535,
                route: Some("r\"1"),
                upstream: Some(odd),
                backend: Some("10.0.0.2:8080"),
                bytes_sent: u64::MAX,
                duration_ms: 0.0,
                upstream_ms: Some(0.001),
                trace: Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")),
            },
            Record {
                started_at: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_999_999_999),
                request_id: "0123456789abcdef",
                client_ip: "255.255.255.255".parse().unwrap(),
                method: "GET",
                host: "",
                path: "/a b",
                status: 0,
                route: None,
                upstream: None,
                backend: None,
                bytes_sent: 0,
                duration_ms: 123_456_789.123,
                upstream_ms: Some(1e-3 * 7.0),
                trace: None,
            },
            Record {
                started_at: UNIX_EPOCH - Duration::from_millis(1),
                client_ip: "2001:db8::1".parse().unwrap(),
                duration_ms: 1e21,
                upstream_ms: Some(f64::NAN),
                ..Record::new("GET", "/", &state)
            },
            Record {
                started_at: UNIX_EPOCH + Duration::from_secs(253_402_300_800),
                ..Record::new("GET", "/", &state)
            },
        ];
        for r in &cases {
            let line = r.to_line();
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&reference(r))
            );
        }
    }

    #[test]
    fn timestamps_match_chrono_from_1970_to_9999() {
        let mut out = Vec::new();
        // Steps of a prime number of seconds (and varying milliseconds) visit every month,
        // leap years and century years across the whole range.
        let mut secs = 0u64;
        let mut n = 0u32;
        while secs < 253_402_300_800 {
            let t = UNIX_EPOCH + Duration::new(secs, n % 1000 * 1_000_000 + n % 7);
            out.clear();
            write_timestamp(&mut out, t);
            let expected = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
            secs += 86_413 * 7 + u64::from(n % 86_400);
            n += 1;
        }
        for day in [0, 59, 60, 365, 11_016, 11_017, 10_957, 47_541, 2_932_896] {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 86_399);
            out.clear();
            write_timestamp(&mut out, t);
            let expected = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        }
    }
}
