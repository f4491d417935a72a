//! A fuzzer for stable Rust: no coverage feedback, but a seeded pseudo-random mutation of
//! a seed corpus (bit flips, byte changes, inserts and deletions, splices, and tokens from a
//! per-target dictionary), which finds the shallow crashes and keeps every run reproducible
//! from its seed. libFuzzer (`cargo +nightly fuzz run`) goes deeper; this runs anywhere.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// What one run did.
pub struct Report {
    pub target: String,
    pub execs: u64,
    pub crashes: u64,
    pub elapsed: Duration,
    pub seed: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} inputs in {:.1} s ({:.0}/s), {} crashes (seed {:#x})",
            self.target,
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.crashes,
            self.seed
        )
    }
}

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens a target's inputs are made of, so mutations stay near valid input.
fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "config" => &[
            b"server:", b"admin:", b"listeners:", b"upstreams:", b"routes:", b"plugins:", b"limits:", b"tls:", b"certificates:",
            b"match:", b"hosts:", b"path:", b"prefix:", b"exact:", b"regex:", b"methods:", b"headers:", b"priority:", b"upstream:",
            b"backends:", b"backup:", b"addr:", b"weight:", b"balance:", b"hash_key:", b"health_check:", b"passive:", b"retries:",
            b"timeouts:", b"max_body_bytes:", b"trusted_proxies:", b"listen:", b"name:", b"redirect_https:", b"proxy_protocol:",
            b"\n  - ", b"\n    ", b"{ ", b" }", b"[", b"]", b", ", b": ", b"\"", b"'", b"${", b"}", b"#", b"&a", b"*a", b"!!",
            b"127.0.0.1:80", b"[::1]:443", b"0.0.0.0:0", b"1s", b"250ms", b"1e9h", b"-1", b"18446744073709551616", b"~", b"null",
            b"*.example.com", b"/api", b"(", b"\\", b"consistent_hash", b"header:x", b"cookie:", b"10.0.0.0/8", b"::/0",
        ],
        "proxy_header" => &[
            b"PROXY ", b"TCP4 ", b"TCP6 ", b"UNKNOWN", b"\r\n", b" ", b"192.168.0.1", b"::1", b"65535", b"0",
            b"\r\n\r\n\0\r\nQUIT\n", b"\x21", b"\x20", b"\x11", b"\x12", b"\x21\x11\x00\x0c", b"\x21\x21\x00\x24", b"\xff\xff",
        ],
        "framing" => &[
            b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.0\r\n", b"Host: a\r\n", b"Content-Length: ", b"Transfer-Encoding: ",
            b"chunked", b"CHUNKED", b"identity", b", ", b"\r\n", b"\n", b"\r", b"\t", b" ", b"\0", b"\x0b", b"\x0c", b":", b"0",
            b"18446744073709551616", b"\r\n\r\n",
        ],
        "path" => &[
            b"/", b"//", b"/.", b"/..", b"/./", b"/../", b"%2e", b"%2E", b"%2f", b"%2F", b"%5C", b"%00", b"%61", b"%7e", b"%3B", b"%25",
            b";", b";a=b", b"..;", b"\\", b"admin", b"/admin", b"api", b"a.b", b"~u", b"\xc3\xa9", b"%", b"%G", b"\x00", b"\x01", b"\x02",
        ],
        "forwarded" => &[b"\xff\x00", b"\xff\x01", b"\xff\x02", b"10.0.0.1", b", ", b"::1", b"203.0.113.9", b"unknown", b"a:1", b"[::1]:80"],
        _ => &[],
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>], dict: &[&[u8]]) {
    for _ in 0..1 + rng.below(6) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                input.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let copy = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            5 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            _ if !dict.is_empty() => {
                let token = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(64 * 1024);
}

/// Runs `target` for `time` over the files in `corpus` and mutations of them. A crashing
/// input is written to `fuzz/artifacts/<target>/` and counted.
pub fn run(name: &str, target: crate::Target, corpus: &Path, time: Duration, seed: u64) -> Report {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus)
        .map(|dir| dir.filter_map(|e| e.ok()).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let dict = dictionary(name);
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut report = Report { target: name.to_string(), execs: 0, crashes: 0, elapsed: Duration::ZERO, seed };
    let start = Instant::now();
    // The seeds themselves first, then mutants; a pool of recent mutants lets mutations stack.
    let mut pool = seeds.clone();
    let mut queue: Vec<Vec<u8>> = seeds.clone();
    while start.elapsed() < time {
        let input = queue.pop().unwrap_or_else(|| {
            let mut m = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &mut m, &seeds, dict);
            m
        });
        report.execs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            report.crashes += 1;
            save_crash(name, &input);
        }
        if pool.len() < 512 {
            pool.push(input);
        } else {
            let i = rng.below(pool.len());
            pool[i] = input;
        }
    }
    report.elapsed = start.elapsed();
    report
}

fn save_crash(name: &str, input: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts").join(name);
    let _ = std::fs::create_dir_all(&dir);
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("crash-{hash:016x}"));
    let _ = std::fs::write(&path, input);
    eprintln!("crash input saved to {}", path.display());
}
