//! `qs`, the command-line tool of `queueserver-zenoh` (its source, `src/bin/qs/`), built as
//! an example of the demo crate:
//!
//! ```text
//! cargo run --release --example qs -- watch demo/plant
//! ```
//!
//! Cargo unifies the features of dependencies over what one command selects. Run from the
//! workspace root, `--example demo` and `--example qs` select the same (the workspace's
//! default members, with their dev-dependencies), so this build reuses every dependency
//! the demo's build compiled, Zenoh included, and compiles only `qs` itself.
//! `cargo run -p queueserver-zenoh --bin qs` selects another set and would compile Zenoh
//! again. `cargo install --path queueserver-zenoh --bin qs` installs the same tool.

#[path = "../../queueserver-zenoh/src/bin/qs/main.rs"]
mod qs;

fn main() -> std::process::ExitCode {
    qs::main()
}
