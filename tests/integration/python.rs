//! A Python with given packages, for tests that use real Python clients
//! (grpcio, its reflection client). The virtualenv lives under the target
//! directory, is made on first use with `python3 -m venv` and pip (which
//! needs the network once), and is reused by later runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// One test at a time builds a venv; the others wait and reuse it.
static BUILDING: Mutex<()> = Mutex::new(());

/// The `python` of a venv holding `packages` (pip requirement strings).
pub fn python(packages: &[&str]) -> PathBuf {
    let _building = BUILDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name: String = packages
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("venv-{name}"));
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if ready.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "python3 -m venv {} failed", dir.display());
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install {packages:?} failed");
    std::fs::write(&ready, packages.join("\n")).unwrap();
    python
}

/// Runs `script` with `args` under [`python`]`(packages)`; its stdout.
pub fn run(packages: &[&str], script: &str, args: &[&str]) -> String {
    let out = Command::new(python(packages))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
