//! Node with the packages of `tests/clients/node/package.json`, for tests
//! that use real Node clients (`@grpc/grpc-js`, ...). `npm ci` installs
//! the locked versions on first use (which needs the registry once); later
//! runs reuse them while the lock file is unchanged.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// One test at a time installs; the others wait and reuse it.
static INSTALLING: Mutex<()> = Mutex::new(());

/// The directory of the Node clients, with their packages installed.
pub fn clients() -> PathBuf {
    let _installing = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = crate::support::root().join("tests/clients/node");
    let lock = std::fs::read(dir.join("package-lock.json")).expect("the lock file is committed");
    let marker = dir.join("node_modules/.protogate-installed");
    if std::fs::read(&marker).is_ok_and(|installed| installed == lock) {
        return dir;
    }
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .status()
        .expect("npm runs");
    assert!(installed.success(), "npm ci in {} failed", dir.display());
    std::fs::write(&marker, lock).unwrap();
    dir
}

/// Runs the Node client `script` (a file of `tests/clients/node`) with `args`; its stdout.
pub fn run(script: &str, args: &[&str]) -> String {
    let dir = clients();
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "node {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
