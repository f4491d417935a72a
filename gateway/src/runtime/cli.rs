//! The command line.

use std::path::PathBuf;

pub(super) struct Args {
    /// A file, or `etcd://…` (fleet/source.rs).
    pub config: PathBuf,
    pub test: bool,
    /// `-t --push etcd://…`: where to store the config once `-t` accepts it.
    pub push: Option<String>,
    pub upgrade: bool,
    pub daemon: bool,
    /// `--explain`: print how this request would be handled and exit (runtime/explain.rs).
    pub explain: Option<super::explain::Request>,
}

pub(super) const USAGE: &str = "usage: portico [-c FILE|etcd://HOST:PORT[,HOST:PORT]/KEY] [-t [--push etcd://HOST:PORT/KEY]] [-u] [-d] [--explain ...]
  -c, --config FILE   the config file (default: conf/portico.yaml), or a key in etcd to follow
  -t, --test          check the config and exit: 0 valid, 1 invalid
      --push URL      with -t: store the config at that etcd key if valid; prints the revision
  -u, --upgrade       take over the listening sockets of the running instance
  -d, --daemon        run in the background
      --explain 'METHOD URL' [-H 'Name: value']... [--listener NAME] [--client-ip IP] [--json]
                      print how that request would be handled and exit: 0 a route
                      matches, 3 none would, 1 invalid config; nothing is started
  -V, --version       print the version";

pub(super) fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: PathBuf::from("conf/portico.yaml"),
        test: false,
        push: None,
        upgrade: false,
        daemon: false,
        explain: None,
    };
    let mut explain = super::explain::Request::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" | "--conf" => {
                args.config = it.next().ok_or("-c needs a file")?.into()
            }
            s if s.starts_with("--config=") => args.config = s["--config=".len()..].into(),
            "-t" | "--test" => args.test = true,
            "--push" => args.push = Some(it.next().ok_or("--push needs an etcd:// URL")?),
            s if s.starts_with("--push=") => args.push = Some(s["--push=".len()..].into()),
            "-u" | "--upgrade" => args.upgrade = true,
            "-d" | "--daemon" => args.daemon = true,
            "--explain" => explain.line = it.next().ok_or("--explain needs 'METHOD URL'")?,
            "-H" | "--header" => explain
                .headers
                .push(it.next().ok_or("-H needs 'Name: value'")?),
            "--listener" => explain.listener = Some(it.next().ok_or("--listener needs a name")?),
            "--client-ip" => explain.client_ip = Some(it.next().ok_or("--client-ip needs an IP")?),
            "--json" => explain.json = true,
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
    if args.push.is_some() && !args.test {
        return Err(format!(
            "--push goes with -t: the config is stored only if valid\n{USAGE}"
        ));
    }
    let explaining = !explain.line.is_empty();
    if !explaining
        && (explain.json
            || explain.listener.is_some()
            || explain.client_ip.is_some()
            || !explain.headers.is_empty())
    {
        return Err(format!(
            "-H, --listener, --client-ip and --json go with --explain\n{USAGE}"
        ));
    }
    args.explain = explaining.then_some(explain);
    Ok(args)
}
