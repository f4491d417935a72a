//! The `portico` binary: the gateway with the built-in plugins.

fn main() {
    let mut registry = gateway::Registry::new();
    plugins::register_builtins(&mut registry);
    gateway::run(registry)
}
