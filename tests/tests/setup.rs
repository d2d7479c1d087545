//! The install step is idempotent: run again on a ready machine (as
//! `make test` has just done), it finds everything and installs nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn a_second_setup_run_changes_nothing() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup.sh");
    let out = Command::new("bash").arg(&script).output().expect("run scripts/setup.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "setup failed:\n{text}");
    for expected in ["setup: Debian packages present", "setup: bpf-linker present", "setup: ready"] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains("installing") && !text.contains("adding"), "a second run installed something:\n{text}");
}
