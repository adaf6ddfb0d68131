//! `systemd/vecdrop.service` and its CUDA drop-in, checked by systemd itself:
//! `systemd-analyze verify` (every key known and well-formed, the drop-in merged) and
//! `systemd-analyze security --offline=yes` (the exposure score must stay low), plus the choices
//! the unit's comments promise (static user, exit code 2 not restarted, no W^X rule that would
//! break the plugins' JIT).
//!
//! `verify` refuses a unit whose `ExecStart=` binary does not exist, and the unit names the
//! installed `/usr/local/bin/vecdrop`; so the checks run on a copy in a temporary directory with
//! `ExecStart=` pointing at the binary this build made, and nothing else changed. Neither command
//! needs a running systemd. Without `systemd-analyze` the tests fail and say how to get it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest `systemd-analyze security` exposure accepted (0 safest … 10 unsafe; "OK" is < 2).
const MAX_EXPOSURE: f64 = 2.0;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn unit_text() -> String {
    std::fs::read_to_string(repo_file("systemd/vecdrop.service")).unwrap()
}

/// `systemd-analyze` on `PATH` (or in /usr/bin); fails the test saying how to get it.
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze not found on PATH: install systemd's tools (Debian/Ubuntu: `sudo apt-get install systemd`; \
                 no running systemd is needed) to check systemd/vecdrop.service"
            )
        })
}

/// A copy of the unit in a temporary directory with `ExecStart=` pointing at this build's binary,
/// and the CUDA drop-in beside it in `vecdrop.service.d/` when `with_cuda`.
fn unit_copy(with_cuda: bool) -> (tempfile::TempDir, PathBuf) {
    let installed = "ExecStart=/usr/local/bin/vecdrop ";
    let text = unit_text();
    assert_eq!(text.matches(installed).count(), 1, "the unit starts /usr/local/bin/vecdrop exactly once");
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("vecdrop.service");
    std::fs::write(&unit, text.replace(installed, &format!("ExecStart={} ", env!("CARGO_BIN_EXE_vecdrop")))).unwrap();
    if with_cuda {
        let drop_ins = dir.path().join("vecdrop.service.d");
        std::fs::create_dir(&drop_ins).unwrap();
        std::fs::copy(repo_file("systemd/vecdrop-cuda.conf"), drop_ins.join("cuda.conf")).unwrap();
    }
    (dir, unit)
}

/// `systemd-analyze verify`: success, and nothing said (unknown keys are only warned about).
fn verify(unit: &Path) {
    let output = Command::new(systemd_analyze()).args(["verify", "--man=no"]).arg(unit).output().expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {}: {:?}\n{stderr}",
        unit.display(),
        output.status
    );
}

/// The overall exposure `systemd-analyze security --offline=yes` gives `unit`.
fn exposure(unit: &Path) -> f64 {
    let output =
        Command::new(systemd_analyze()).args(["security", "--offline=yes", "--no-pager"]).arg(unit).output().expect("systemd-analyze runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|line| line.contains("Overall exposure level")).unwrap_or_else(|| {
        panic!("no exposure level in systemd-analyze security's output:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    eprintln!("{}: {}", unit.display(), line.trim());
    line.split(": ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|score| score.parse().ok()).expect("a score")
}

/// The values of `key=` lines (comments skipped).
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|line| line.strip_prefix(key)?.strip_prefix('=')).collect()
}

#[test]
fn the_unit_verifies() {
    let (_dir, unit) = unit_copy(false);
    verify(&unit);
}

#[test]
fn the_unit_with_the_cuda_drop_in_verifies() {
    let (_dir, unit) = unit_copy(true);
    verify(&unit);
}

#[test]
fn the_units_exposure_stays_low() {
    let (_dir, unit) = unit_copy(false);
    let score = exposure(&unit);
    assert!(score <= MAX_EXPOSURE, "systemd-analyze security rates the unit {score}, above {MAX_EXPOSURE}");
    let (_dir, unit) = unit_copy(true);
    let score = exposure(&unit);
    assert!(score <= MAX_EXPOSURE, "systemd-analyze security rates the unit with the CUDA drop-in {score}, above {MAX_EXPOSURE}");
}

#[test]
fn the_unit_makes_the_promised_choices() {
    let text = unit_text();
    assert!(values(&text, "DynamicUser").is_empty(), "a static user, so that drop folders and state have a stable owner");
    assert_eq!(values(&text, "User"), ["vecdrop"]);
    assert_eq!(values(&text, "Group"), ["vecdrop"]);
    assert_eq!(values(&text, "SupplementaryGroups"), ["vecdrop-drop"]);
    assert_eq!(values(&text, "UMask"), ["0077"]);
    assert_eq!(values(&text, "LoadCredential"), ["milvus-token:/etc/vecdrop/milvus-token"]);
    assert_eq!(values(&text, "RestartPreventExitStatus"), [vecdrop::commands::EXIT_USAGE.to_string()], "the exit code of config errors");
    assert!(values(&text, "MemoryDenyWriteExecute").is_empty(), "wasmtime's JIT needs writable, then executable memory");
    let cuda = std::fs::read_to_string(repo_file("systemd/vecdrop-cuda.conf")).unwrap();
    assert_eq!(values(&cuda, "PrivateDevices"), ["no"]);
}

#[test]
fn every_directive_is_explained_by_a_comment_above_it() {
    for file in ["systemd/vecdrop.service", "systemd/vecdrop-cuda.conf"] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        let mut explained = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                explained = true;
            } else if line.is_empty() {
                explained = false;
            } else if !line.starts_with('[') {
                assert!(explained, "{file}: `{line}` has no comment above its group");
            }
        }
    }
}
