//! `reload:`: hot reload of the config file.

use std::time::Duration;

use serde::Deserialize;

use super::value::NonZeroDuration;

/// Default quiet time after a change of the config file before it is reloaded.
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(500);

/// `reload:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    /// Reload when the file changes.
    #[schemars(extend("default" = true))]
    pub watch: Option<bool>,
    /// Quiet time after the last change before reloading.
    #[schemars(extend("default" = "500ms"))]
    pub debounce: Option<NonZeroDuration>,
    /// Keep the running schema when a swap would break clients.
    #[schemars(extend("default" = false))]
    pub refuse_breaking: Option<bool>,
}

/// Hot reload of the config file.
#[derive(Debug, Clone)]
pub struct ReloadOptions {
    /// Reload when the file changes (SIGHUP always reloads). Default true.
    pub watch: bool,
    /// Quiet time after the last change before reloading. Default 500ms.
    pub debounce: Duration,
    /// A swap (reload, reflection refresh) whose schema diff has a breaking
    /// change is refused: the running gateway keeps serving. Default false:
    /// swap and report.
    pub refuse_breaking: bool,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: DEFAULT_RELOAD_DEBOUNCE,
            refuse_breaking: false,
        }
    }
}

impl From<ReloadSection> for ReloadOptions {
    fn from(r: ReloadSection) -> Self {
        let d = Self::default();
        Self {
            watch: r.watch.unwrap_or(d.watch),
            debounce: r.debounce.map_or(d.debounce, NonZeroDuration::get),
            refuse_breaking: r.refuse_breaking.unwrap_or(d.refuse_breaking),
        }
    }
}
