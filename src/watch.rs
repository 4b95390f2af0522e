//! File watching and SIGHUP for reloads: which file events may change a
//! set of watched files, and the debounced wait for the next reason to
//! reload. Shared by the config reload (`server::reload`) and the
//! certificate reload (`tls`); what a reload does is theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Watches the directories `paths` are named in, as named (not resolved):
/// editors replace files rather than write them in place, and Kubernetes
/// swaps a symlinked directory for ConfigMaps and Secrets. A write,
/// creation, rename or removal of one of the files, or of a `..` entry
/// (the ConfigMap swap), is a possible change; the reload then compares the
/// files' bytes. Other files in the directories are not looked at, so a log
/// written beside the config does not wake the watcher; reads (as by a
/// reload) are not changes.
pub(crate) fn watch_paths(
    paths: &[&Path],
    changed: Arc<Notify>,
) -> anyhow::Result<RecommendedWatcher> {
    let names: Vec<std::ffi::OsString> = paths
        .iter()
        .filter_map(|p| p.file_name().map(ToOwned::to_owned))
        .collect();
    let watched = move |path: &Path| is_watched(&names, path);
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
            Ok(event)
                if matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                )
                    // No paths: the watcher lost events and asks for a rescan.
                    && (event.paths.is_empty() || event.paths.iter().any(|p| watched(p))) =>
            {
                changed.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watch failed"),
        })
        .context("cannot start a file watcher")?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in paths {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dirs.contains(&dir) {
            continue;
        }
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        tracing::debug!(dir = %dir.display(), "watching for file changes");
        dirs.push(dir);
    }
    Ok(watcher)
}

/// Whether an event on `path` may change a file named `names`: the file
/// itself (by the editor's final rename too), or a `..` entry of a
/// ConfigMap volume swap.
fn is_watched(names: &[std::ffi::OsString], path: &Path) -> bool {
    path.file_name().is_some_and(|name| {
        names.iter().any(|n| n == name) || name.as_encoded_bytes().starts_with(b"..")
    })
}

/// What woke a watcher.
pub(crate) enum Trigger {
    /// A watched file changed, and `debounce` passed quietly since.
    FileChanged,
    /// SIGHUP.
    Hangup,
}

/// Waits for a file change followed by `debounce` of quiet (editors and
/// certificate managers write in several steps), or for SIGHUP.
pub(crate) async fn next_trigger(
    changed: &Notify,
    hangups: &mut Hangups,
    debounce: std::time::Duration,
) -> Trigger {
    tokio::select! {
        () = changed.notified() => {
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(debounce) => return Trigger::FileChanged,
                }
            }
        }
        () = hangups.next() => Trigger::Hangup,
    }
}

/// SIGHUP, where there is such a signal.
pub(crate) struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    pub(crate) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGHUP; never, without a handler.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn only_the_watched_files_and_configmap_swaps_wake_the_watcher() {
        let names = ["gateway.yaml".into(), "user.proto".into()];
        let cases = [
            ("/etc/protogate/gateway.yaml", true),
            ("gateway.yaml", true),
            ("/p/shop/user/v1/user.proto", true),
            ("/etc/protogate/..data", true),
            ("/etc/protogate/..2026_12_02_01_00_00.123", true),
            ("/etc/protogate/..data_tmp", true),
            ("/etc/protogate/gateway.log", false),
            ("/etc/protogate/.gateway.yaml.swp", false),
            ("/etc/protogate/gateway.yaml~", false),
            ("/etc/protogate/4913", false),
            ("/etc/protogate/", false),
        ];
        for (path, want) in cases {
            assert_eq!(super::is_watched(&names, Path::new(path)), want, "{path}");
        }
    }
}
