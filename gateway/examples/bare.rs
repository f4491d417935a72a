fn main() {
    gateway::run(gateway::Registry::new())
}
