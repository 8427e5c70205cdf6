//! Benchmarks of the hot paths (masking, UTF-8, frame parsing); none yet.

fn main() {}
