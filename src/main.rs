//! The `portico` binary: the gateway with the built-in plugins.

// Pingora allocates and frees a great deal per request (boxed futures, header maps, body
// buffers); mimalloc does that with markedly fewer instructions than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut registry = gateway::Registry::new();
    plugins::register_builtins(&mut registry);
    gateway::run(registry)
}
