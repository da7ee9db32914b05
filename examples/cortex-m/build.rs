//! Picks the board from the target, puts its `memory.x` where cortex-m-rt's `link.x` finds
//! it, and tells the firmware its board and optimisation level.
//!
//! | target | board (QEMU machine) |
//! |---|---|
//! | `thumbv7em-none-eabihf` | `mps2-an386`, Cortex-M4F |
//! | `thumbv7m-none-eabi` | `lm3s6965evb`, Cortex-M3 |

use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let board = match target.as_str() {
        "thumbv7em-none-eabihf" => "mps2-an386",
        "thumbv7m-none-eabi" => "lm3s6965evb",
        other => panic!(
            "no board for target {other}: build for thumbv7em-none-eabihf or thumbv7m-none-eabi"
        ),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let memory = format!("memory/{board}.x");
    fs::copy(&memory, out.join("memory.x")).expect("the board's memory.x is readable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo::rustc-check-cfg=cfg(board, values(\"mps2-an386\", \"lm3s6965evb\"))");
    println!("cargo::rustc-cfg=board=\"{board}\"");
    let opt_level = env::var("OPT_LEVEL").unwrap_or_else(|_| "?".into());
    println!("cargo::rustc-env=FIRMWARE_OPT_LEVEL={opt_level}");
    println!("cargo::rerun-if-changed=memory");
    println!("cargo::rerun-if-changed=build.rs");
}
