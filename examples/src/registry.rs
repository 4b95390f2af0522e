//! Self-registration in etcd, as gRPC services do with etcd naming: each
//! backend puts `<prefix><backend>/<address>` under one lease, its value in
//! the JSON form of `go.etcd.io/etcd/client/v3/naming/endpoints`
//! (`{"Addr": "127.0.0.1:50052", "Metadata": {"version": "v1"}}`), and
//! keeps the lease alive. When the process dies the lease expires and the
//! keys go with it; [`Registration::revoke`] removes them at once.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, PutOptions};
use tokio::task::JoinHandle;

/// What an instance registers: its key and the value.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The full key, e.g. `/services/orders/127.0.0.1:50052`.
    pub key: String,
    /// The registered value (Go endpoints JSON).
    pub value: String,
}

impl Entry {
    /// The entry of `backend` at `addr` under `prefix` (which ends in `/`),
    /// with `metadata` (e.g. `{"version": "v2"}`).
    pub fn new(
        prefix: &str,
        backend: &str,
        addr: SocketAddr,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let value = serde_json::json!({ "Addr": addr.to_string(), "Metadata": metadata });
        Self {
            key: format!("{prefix}{backend}/{addr}"),
            value: value.to_string(),
        }
    }
}

/// The entries of the four shop backends of `backends` under `prefix`
/// (`<prefix>users/<addr>`, `orders`, `inventory`, `users-v2`), each with
/// `version` metadata; `advertise` replaces the listening IP (a pod
/// listening on 0.0.0.0 registers its pod IP).
pub fn shop_entries(
    prefix: &str,
    backends: &crate::Backends,
    version: &str,
    advertise: Option<std::net::IpAddr>,
) -> Vec<Entry> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("version".into(), version.into());
    [
        ("users", backends.users),
        ("orders", backends.orders),
        ("inventory", backends.inventory),
        ("users-v2", backends.users_v2),
    ]
    .into_iter()
    .map(|(name, addr)| {
        let addr = advertise.map_or(addr, |ip| SocketAddr::new(ip, addr.port()));
        Entry::new(prefix, name, addr, &metadata)
    })
    .collect()
}

/// Entries kept in etcd under a lease, until revoked or the process ends.
pub struct Registration {
    client: Client,
    lease: i64,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Grants a lease of `ttl` and puts `entries` under it, then keeps the
    /// lease alive (every third of `ttl`) in a task of its own. A lease lost
    /// while etcd was away is granted again and the entries put back.
    ///
    /// # Errors
    /// etcd cannot be reached, or refuses the lease or a put.
    pub async fn register(
        etcd: &[String],
        entries: Vec<Entry>,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let mut client = Client::connect(etcd, None)
            .await
            .with_context(|| format!("cannot connect to etcd at {}", etcd.join(",")))?;
        let seconds = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let lease = put_all(&mut client, &entries, seconds).await?;
        let keeper = tokio::spawn(keep_alive(client.clone(), entries, seconds, lease));
        Ok(Self {
            client,
            lease,
            keeper,
        })
    }

    /// The lease the entries are under.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Revokes the lease: the entries are deleted now, as if the instance
    /// had died and its lease expired.
    ///
    /// # Errors
    /// etcd refused or could not be reached.
    pub async fn revoke(mut self) -> anyhow::Result<()> {
        self.keeper.abort();
        self.client
            .lease_revoke(self.lease)
            .await
            .context("cannot revoke the lease")?;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // No more keep-alives: the entries expire with the lease.
        self.keeper.abort();
    }
}

/// A new lease of `ttl` seconds with every entry put under it.
async fn put_all(client: &mut Client, entries: &[Entry], ttl: i64) -> anyhow::Result<i64> {
    let lease = client
        .lease_grant(ttl, None)
        .await
        .context("cannot get a lease")?
        .id();
    for entry in entries {
        client
            .put(
                entry.key.as_str(),
                entry.value.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .with_context(|| format!("cannot register {}", entry.key))?;
    }
    Ok(lease)
}

/// Keeps `lease` alive; when it is lost (etcd was away longer than the
/// TTL), registers again under a new one.
async fn keep_alive(mut client: Client, entries: Vec<Entry>, ttl: i64, mut lease: i64) {
    let period = Duration::from_secs(u64::try_from(ttl / 3).unwrap_or(1).max(1));
    loop {
        // Ends when etcd is away or the lease is gone.
        let _ = async {
            let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
            loop {
                keeper.keep_alive().await?;
                match answers.message().await? {
                    // A TTL of 0: the lease expired before this keep-alive.
                    Some(answer) if answer.ttl() > 0 => {}
                    _ => return Ok::<(), etcd_client::Error>(()),
                }
                tokio::time::sleep(period).await;
            }
        }
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if lease_expired(&mut client, lease).await {
            match put_all(&mut client, &entries, ttl).await {
                Ok(new) => {
                    tracing::info!(lease = new, "registered again in etcd under a new lease");
                    lease = new;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot register in etcd; retrying")
                }
            }
        }
    }
}

/// Whether etcd no longer knows `lease` (false when etcd cannot say).
async fn lease_expired(client: &mut Client, lease: i64) -> bool {
    match client.lease_time_to_live(lease, None).await {
        Ok(answer) => answer.ttl() <= 0,
        Err(_) => false,
    }
}
