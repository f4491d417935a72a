//! Runs the fuzz targets on stable Rust with seeded random mutations (see `src/mutate.rs`):
//!
//!     cargo run --release --manifest-path fuzz/Cargo.toml --bin fuzz-stable -- [--seconds N] [--seed S] [TARGET...]
//!
//! N seconds per target (default 60); every target when none is named. Exits 1 if any input
//! crashed a target (the inputs are in `fuzz/artifacts/<target>/`). A crash input replays
//! with `-- --replay FILE TARGET`.

use std::path::Path;
use std::time::Duration;

fn main() {
    let mut seconds = 60.0;
    let mut seed = 0x5eed_u64;
    let mut names = Vec::new();
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed S"),
            "--replay" => replay = Some(args.next().expect("--replay FILE")),
            name => names.push(name.to_string()),
        }
    }
    let targets: Vec<_> = portico_fuzz::TARGETS.iter().filter(|(n, _)| names.is_empty() || names.iter().any(|x| x == n)).collect();
    if targets.is_empty() {
        eprintln!("no such target; targets: {:?}", portico_fuzz::TARGETS.iter().map(|(n, _)| n).collect::<Vec<_>>());
        std::process::exit(2);
    }
    if let Some(file) = replay {
        let input = std::fs::read(&file).expect("read the input");
        for (name, target) in targets {
            eprintln!("replaying {file} on {name}");
            target(&input);
        }
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut crashed = false;
    for (name, target) in targets {
        let report = portico_fuzz::mutate::run(name, *target, &corpus.join(name), Duration::from_secs_f64(seconds), seed);
        println!("{report}");
        crashed |= report.crashes > 0;
    }
    std::process::exit(if crashed { 1 } else { 0 });
}
