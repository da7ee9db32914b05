//! The workspace's demo: see `examples/demo.rs` and the workspace README. `examples/qs.rs`
//! builds `queueserver-zenoh`'s `qs` tool from its source, so that the README's second
//! command reuses the demo's build.
