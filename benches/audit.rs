//! Audit benchmarks (being written).
fn main() {}
