//! The command line.

use std::path::PathBuf;

pub(super) struct Args {
    pub config: PathBuf,
    pub test: bool,
    pub upgrade: bool,
    pub daemon: bool,
}

pub(super) const USAGE: &str = "usage: portico [-c FILE] [-t] [-u] [-d]
  -c, --config FILE   the config file (default: conf/portico.yaml)
  -t, --test          check the config and exit: 0 valid, 1 invalid
  -u, --upgrade       take over the listening sockets of the running instance
  -d, --daemon        run in the background
  -V, --version       print the version";

pub(super) fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: PathBuf::from("conf/portico.yaml"),
        test: false,
        upgrade: false,
        daemon: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" | "--conf" => {
                args.config = it.next().ok_or("-c needs a file")?.into()
            }
            s if s.starts_with("--config=") => args.config = s["--config=".len()..].into(),
            "-t" | "--test" => args.test = true,
            "-u" | "--upgrade" => args.upgrade = true,
            "-d" | "--daemon" => args.daemon = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("portico {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}
