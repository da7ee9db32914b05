//! The workspace's demo: see `examples/demo.rs` and the workspace README.
