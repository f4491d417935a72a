//! The `portico` binary: the gateway with the built-in plugins.

// Pingora allocates and frees a great deal per request (boxed futures, header maps, body
// buffers); mimalloc does that with markedly fewer instructions than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // mimalloc asks for transparent huge pages on its arenas, so under THP's common `madvise`
    // mode (Debian's, Ubuntu's) memory becomes resident in 2 MiB steps however little of a
    // page is in use: ~5 MiB more at start and ~3 KiB more per idle TLS connection (2,000
    // connections: 31 vs 28 KiB each, benches/README.md). A proxy's heap is small and mostly
    // per connection, and timed A/B runs showed no cost in throughput. Set before the runtime
    // allocates much; pages already faulted keep their size. Linux only.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let mut registry = gateway::Registry::new();
    plugins::register_builtins(&mut registry);
    gateway::run(registry)
}
