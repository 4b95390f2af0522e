//! `admin:`: the operator's API, on a listener of its own.

use std::net::SocketAddr;

use serde::Deserialize;

/// `admin:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin API listens. Unset: no admin API.
    pub listen: Option<SocketAddr>,
    /// Let `listen` be an address other machines reach.
    #[serde(default)]
    pub allow_remote: bool,
}

/// The admin API (`GET /routes`, `/explain`, `/schema/diff`, `/config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminOptions {
    /// Where it listens; `None`: it is off (the default).
    pub listen: Option<SocketAddr>,
}

impl AdminSection {
    /// Checks that the admin API stays on loopback unless told otherwise:
    /// it shows the route table and the (redacted) config, and has no
    /// authentication of its own.
    pub(super) fn validate(
        self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<AdminOptions> {
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !self.allow_remote
        {
            return Err(err(
                "admin.listen",
                format!(
                    "{addr} is not a loopback address; the admin API has no authentication of its own and shows the route table and config: listen on 127.0.0.1, or set `admin.allow_remote: true` behind a firewall"
                ),
            ));
        }
        Ok(AdminOptions {
            listen: self.listen,
        })
    }
}
