//! Ports for the servers the tests start on a chosen port (Portico's listeners and admin,
//! Pebble, etcd, redis-server). Shared by the black-box kit and the gateway crate's own tests
//! (included by path there), so it uses std only.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed
/// out before.
///
/// Taken below the kernel's ephemeral range (Linux: 32768–60999 unless configured otherwise),
/// where every outgoing connection takes its local port: a port picked there and released
/// could be taken by any connection before its server binds it (CI saw Pebble's HTTP-01
/// listener fail with `AddrInUse`). Below it only servers binding a chosen port compete, and
/// within one test binary this function never hands out a port twice.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap();
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let end = ephemeral_start();
    let first = end.saturating_sub(12_000).max(1024);
    let span = u32::from(end - first);
    // Each process starts somewhere of its own, so that test binaries run one after another
    // (their servers' ports perhaps still in TIME_WAIT) do not all probe the same ports.
    let offset = std::process::id().wrapping_mul(7919) % span;
    for i in 0..span {
        let port = first + ((offset + i) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {first}..{end}");
}

/// Where the kernel starts handing out local ports for outgoing connections.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|start: &u16| *start > 2048)
        .unwrap_or(32768)
}
