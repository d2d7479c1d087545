//! Builds the eBPF programs of `../ebpf` and leaves the object at `$OUT_DIR/sdn-ebpf`, where
//! `src/bpf.rs` embeds it.
//!
//! The eBPF crates are a separate workspace that builds only with nightly for
//! `bpfel-unknown-none` (see `ebpf/README.md`), so this script runs that workspace's own cargo:
//! `rustup run nightly cargo build --release --target bpfel-unknown-none -Z build-std=core`, with
//! `ebpf/` as the working directory (so its `.cargo/config.toml` applies, which adds bpf-linker's
//! `--btf`) and a target directory under `OUT_DIR`. Cargo gives build scripts variables meant for
//! the host build (`RUSTC`, `RUSTC_WORKSPACE_WRAPPER` under clippy, `CARGO_ENCODED_RUSTFLAGS`);
//! they are removed, because they would build with the stable compiler, lint with the host's
//! clippy driver, or replace the config's flags and drop the BTF.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Output},
};

/// What the build needs, and how `scripts/setup.sh` (or a person) provides it.
const SETUP_HINT: &str = "The eBPF programs need the nightly toolchain with rust-src and bpf-linker on PATH \
     (`scripts/setup.sh` installs all three: `rustup toolchain install nightly --component rust-src`, \
     `cargo install bpf-linker --no-default-features --features llvm-22`).";

/// Environment variables cargo sets for build scripts that must not reach the nested build.
const REMOVED_ENV: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTDOC",
    "RUSTUP_TOOLCHAIN",
];

const TARGET: &str = "bpfel-unknown-none";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: building the eBPF programs (ebpf/) failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let ebpf_dir = manifest_dir.parent().ok_or("sdn-node has no parent directory")?.join("ebpf");

    for path in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "sdn-ebpf/Cargo.toml",
        "sdn-ebpf/src",
        "sdn-ebpf-common/Cargo.toml",
        "sdn-ebpf-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(path).display());
    }
    if !ebpf_dir.join("Cargo.toml").is_file() {
        return Err(format!("{} is not the eBPF workspace (no Cargo.toml)", ebpf_dir.display()));
    }

    check_prerequisites()?;

    let target_dir = out_dir.join("ebpf-target");
    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf_dir);
    for name in REMOVED_ENV {
        cargo.env_remove(name);
    }
    let output = cargo.output().map_err(|e| format!("could not run `rustup`: {e}. {SETUP_HINT}"))?;
    if !output.status.success() {
        return Err(format!(
            "`rustup run nightly cargo build --release --target {TARGET} -Z build-std=core` in {} \
             exited with {}:\n{}\n{SETUP_HINT}",
            ebpf_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let built = target_dir.join(TARGET).join("release").join("sdn-ebpf");
    let object = out_dir.join("sdn-ebpf");
    fs::copy(&built, &object).map_err(|e| format!("copying {} to {}: {e}", built.display(), object.display()))?;
    check_btf(&object)?;
    Ok(())
}

/// Fails early, naming the missing piece, instead of leaving it to a nested cargo error.
fn check_prerequisites() -> Result<(), String> {
    let rustc = run_quiet("rustup", ["run", "nightly", "rustc", "--print", "sysroot"])
        .map_err(|e| format!("the nightly toolchain is not usable ({e}). {SETUP_HINT}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&rustc.stdout).trim());
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        return Err(format!(
            "the rust-src component of the nightly toolchain is missing ({} does not exist); \
             `-Z build-std=core` needs it. {SETUP_HINT}",
            core_src.display()
        ));
    }
    run_quiet("bpf-linker", ["--version"])
        .map_err(|e| format!("bpf-linker is not on PATH or does not run ({e}). {SETUP_HINT}"))?;
    Ok(())
}

fn run_quiet<I, S>(program: &str, args: I) -> Result<Output, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    for name in REMOVED_ENV {
        command.env_remove(name);
    }
    let output = command.output().map_err(|e| format!("`{program}` could not be run: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!("`{program}` exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The object must carry `.BTF` (bpf-linker's `--btf` from `ebpf/.cargo/config.toml`): without it
/// something overrode the config's rustflags.
fn check_btf(object: &Path) -> Result<(), String> {
    let bytes = fs::read(object).map_err(|e| format!("reading {}: {e}", object.display()))?;
    if bytes.windows(5).any(|w| w == b".BTF\0") {
        Ok(())
    } else {
        Err(format!(
            "{} has no .BTF section: bpf-linker's --btf from ebpf/.cargo/config.toml did not apply \
             (is a RUSTFLAGS-like variable overriding it?)",
            object.display()
        ))
    }
}
