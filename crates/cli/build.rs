//! Link flags of the `lifeboat` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Packed relative relocations (RELR, glibc 2.36 and binutils 2.38 on): the binary stays
        // position-independent, and the dynamic loader applies its 55,000 relative relocations
        // from a 20 KiB bitmap instead of a 1.3 MiB table. That is 1.3 ms of every command's
        // start, a tenth of a small `dump` (docs/benchmarks.md).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
