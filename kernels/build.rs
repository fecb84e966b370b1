//! Compile the AVX-512 and AVX-VNNI paths only where the compiler has them: their intrinsics
//! and target features are stable from Rust 1.89. Older compilers (the workspace supports 1.87)
//! build the scalar and AVX2 paths; `path()` then never picks the others.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(runllama_avx512)");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        // "rustc 1.95.0 (59807616e 2026-04-14)" or "rustc 1.96.0-nightly (...)"
        .and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok());
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=runllama_avx512");
    }
}
