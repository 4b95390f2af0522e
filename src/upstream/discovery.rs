//! Endpoints from etcd (`backends.<name>.discovery.etcd`): the instances
//! registered under a key prefix, as gRPC's etcd naming registers them.
//!
//! A task that ends with the backend lists the prefix, then watches it from
//! the listing's revision: a put adds (or changes) an instance, a delete
//! (or an expired lease: the instance died) removes it, without a reload.
//! When etcd cannot be reached, the last known endpoints stay, the task
//! retries with backoff and lists again once back, and `/readyz` and
//! `/metrics` show the state. Endpoints whose address is unchanged are
//! kept, with their connections and health state.
//!
//! A value is the address (`host:port`, or a URL), or the JSON object of
//! `go.etcd.io/etcd/client/v3/naming/endpoints` (`{"Addr": ..., "Metadata":
//! ...}`), so Go services register unchanged. `discovery.etcd.metadata`
//! keeps only the instances whose metadata has the given values.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use http::Uri;
use serde_json::Value;

use super::backend::{Backend, swap_in};
use super::endpoint::Endpoint;
use super::status::{DiscoveryState, DiscoveryStatus};
use crate::config::{BackendConfig, EtcdDiscovery};

/// First wait before trying etcd again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One registered instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `http://host:port` (`https://` when the backend has `tls`).
    pub uri: Uri,
    /// The registered metadata: the JSON object's `Metadata`, else empty.
    pub metadata: serde_json::Map<String, Value>,
}

/// Reads one registered value: `host:port`, `http(s)://host:port`, or the
/// Go endpoints JSON (`{"Addr": "host:port", "Metadata": {...}}`; an
/// older `"Op": 1` marks a deletion and is no instance).
///
/// # Errors
/// A value that names no address with a port.
pub fn parse(value: &[u8], tls: bool) -> Result<Instance, String> {
    let text = std::str::from_utf8(value)
        .map_err(|_| "the value is not UTF-8".to_owned())?
        .trim();
    let (address, metadata) = if text.starts_with('{') {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("the value is not JSON ({e})"))?;
        if json
            .get("Op")
            .and_then(Value::as_i64)
            .is_some_and(|op| op != 0)
        {
            return Err("the value marks a deletion (Op is not 0)".to_owned());
        }
        let address = json
            .get("Addr")
            .and_then(Value::as_str)
            .ok_or_else(|| "the JSON value has no string \"Addr\"".to_owned())?
            .to_owned();
        let metadata = match json.get("Metadata") {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        (address, metadata)
    } else {
        (text.to_owned(), serde_json::Map::new())
    };
    let scheme = if tls { "https" } else { "http" };
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(&address)
        .trim_end_matches('/');
    let uri: Uri = format!("{scheme}://{bare}")
        .parse()
        .map_err(|_| format!("{address:?} is not host:port"))?;
    if uri.port_u16().is_none() || uri.path() != "/" {
        return Err(format!("{address:?} is not host:port"));
    }
    Ok(Instance { uri, metadata })
}

/// Whether `instance` has every metadata value `wanted` names (a number or
/// a boolean matches its text).
fn matches(instance: &Instance, wanted: &BTreeMap<String, String>) -> bool {
    wanted
        .iter()
        .all(|(key, want)| match instance.metadata.get(key) {
            Some(Value::String(s)) => s == want,
            Some(Value::Number(n)) => want.parse::<serde_json::Number>().is_ok_and(|w| w == *n),
            Some(Value::Bool(b)) => want.parse::<bool>().is_ok_and(|w| w == *b),
            _ => false,
        })
}

/// What the registry holds for a backend: instances by key.
type Registered = BTreeMap<String, Instance>;

/// A client for `etcd`.
async fn connect(etcd: &EtcdDiscovery) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(etcd.timeout)
        // A silent etcd (a partition) is noticed by pings, not only by a closed socket.
        .with_keep_alive(Duration::from_secs(5), etcd.timeout)
        .with_keep_alive_while_idle(true);
    if let Some(tls) = &etcd.tls {
        let host = etcd
            .endpoints
            .first()
            .and_then(|u| u.parse::<Uri>().ok())
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_default();
        options = options.with_tls(tls.client_config(&host));
    }
    if let Some((user, password)) = &etcd.auth {
        options = options.with_user(user.clone(), password.clone());
    }
    tokio::time::timeout(
        etcd.timeout,
        Client::connect(&etcd.endpoints, Some(options)),
    )
    .await
    .map_err(|_| format!("no answer from etcd within {:?}", etcd.timeout))?
    .map_err(|e| crate::cause::chain(&e))
}

/// Lists the prefix: the instances under it, and the revision to watch from.
async fn list(
    client: &mut Client,
    config: &BackendConfig,
    etcd: &EtcdDiscovery,
) -> Result<(Registered, i64), String> {
    let listed = tokio::time::timeout(
        etcd.timeout,
        client.get(
            etcd.prefix.as_bytes(),
            Some(GetOptions::new().with_prefix()),
        ),
    )
    .await
    .map_err(|_| format!("no answer from etcd within {:?}", etcd.timeout))?
    .map_err(|e| crate::cause::chain(&e))?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut registered = Registered::new();
    for kv in listed.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        if let Some(instance) = read(config, &key, kv.value()) {
            registered.insert(key, instance);
        }
    }
    Ok((registered, revision))
}

/// The instance a key holds, or `None` (logged) when its value is not one.
fn read(config: &BackendConfig, key: &str, value: &[u8]) -> Option<Instance> {
    match parse(value, config.tls.is_some()) {
        Ok(instance) => Some(instance),
        Err(e) => {
            tracing::warn!(backend = %config.name, %key, error = %e, "ignoring an etcd entry that names no instance");
            None
        }
    }
}

/// The addresses registered for `config` now, for a one-off use (reflection
/// at load): one listing, no watch.
///
/// # Errors
/// etcd could not be reached or did not answer in time.
pub async fn addresses(config: &BackendConfig) -> Result<Vec<Uri>, String> {
    let Some(etcd) = &config.discovery else {
        return Ok(config.endpoints.clone());
    };
    let mut client = connect(etcd).await?;
    let (registered, _) = list(&mut client, config, etcd).await?;
    Ok(selected(&registered, etcd))
}

/// The addresses of the registered instances this backend takes, in key
/// order, each once.
fn selected(registered: &Registered, etcd: &EtcdDiscovery) -> Vec<Uri> {
    let mut out: Vec<Uri> = Vec::new();
    for instance in registered.values().filter(|i| matches(i, &etcd.metadata)) {
        if !out.contains(&instance.uri) {
            out.push(instance.uri.clone());
        }
    }
    out
}

/// Starts the task that keeps `backend`'s endpoints in step with etcd, and
/// waits (up to `discovery.etcd.timeout`) for its first listing, so a
/// gateway that starts with etcd up serves the instances at once; with
/// etcd down it starts with no endpoints.
pub async fn start(backend: &Arc<Backend>) {
    let Some(etcd) = backend.config.discovery.clone() else {
        return;
    };
    backend.set_discovery(DiscoveryStatus::new(&etcd));
    let (first, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(
        Arc::downgrade(backend),
        backend.config.clone(),
        etcd.clone(),
        first,
    ));
    backend.adopt(task.abort_handle());
    let _ = tokio::time::timeout(etcd.timeout, listed).await;
}

/// Sessions with etcd, one after the other, until the backend is dropped.
async fn run(
    backend: Weak<Backend>,
    config: BackendConfig,
    etcd: EtcdDiscovery,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ended = session(&backend, &config, &etcd, &mut first, &mut backoff).await;
        let Some(alive) = backend.upgrade() else {
            return;
        };
        let Err(error) = ended else {
            return;
        };
        // Logged once per outage; the state says the rest.
        if alive.discovery_state() == Some(DiscoveryState::Unreachable) {
            tracing::debug!(backend = %config.name, %error, "etcd still unreachable");
        } else {
            tracing::warn!(backend = %config.name, %error, "etcd unreachable; keeping the last known endpoints");
        }
        alive.update_discovery(|s| {
            s.state = DiscoveryState::Unreachable;
            s.error = Some(error.clone());
        });
        drop(alive);
        // A start waiting for the first listing gives up at the first failure.
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        let quarter = u64::try_from(backoff.as_millis() / 4).unwrap_or(0);
        tokio::time::sleep(backoff + Duration::from_millis(fastrand::u64(..=quarter))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One session: connect, list, apply, then follow the watch. `Ok` when the
/// backend is gone; `Err` with the reason when etcd failed.
async fn session(
    backend: &Weak<Backend>,
    config: &BackendConfig,
    etcd: &EtcdDiscovery,
    first: &mut Option<tokio::sync::oneshot::Sender<()>>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let mut client = connect(etcd).await?;
    let (mut registered, revision) = list(&mut client, config, etcd).await?;
    if !apply(backend, config, etcd, &registered).await {
        return Ok(());
    }
    let mut stream = tokio::time::timeout(
        etcd.timeout,
        client.watch(
            etcd.prefix.as_bytes(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await
    .map_err(|_| format!("no answer from etcd within {:?}", etcd.timeout))?
    .map_err(|e| crate::cause::chain(&e))?;
    *backoff = FIRST_BACKOFF;
    let Some(alive) = backend.upgrade() else {
        return Ok(());
    };
    let previous = alive.discovery_state();
    alive.update_discovery(|s| {
        s.state = DiscoveryState::Connected;
        s.error = None;
        s.revision = revision;
    });
    if previous != Some(DiscoveryState::Connected) {
        tracing::info!(
            backend = %config.name,
            prefix = %etcd.prefix,
            instances = registered.len(),
            "watching etcd for the backend's instances"
        );
    }
    drop(alive);
    if let Some(first) = first.take() {
        let _ = first.send(());
    }
    loop {
        let response = stream
            .message()
            .await
            .map_err(|e| crate::cause::chain(&e))?
            .ok_or_else(|| "etcd ended the watch".to_owned())?;
        if response.canceled() {
            // Compacted past our revision, or cancelled by etcd: list again.
            return Err(format!(
                "etcd cancelled the watch ({})",
                response.cancel_reason()
            ));
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match event.event_type() {
                EventType::Put => match read(config, &key, kv.value()) {
                    Some(instance) => {
                        changed |= registered.insert(key, instance.clone()) != Some(instance);
                    }
                    None => changed |= registered.remove(&key).is_some(),
                },
                EventType::Delete => changed |= registered.remove(&key).is_some(),
            }
        }
        let Some(alive) = backend.upgrade() else {
            return Ok(());
        };
        if let Some(header) = response.header() {
            alive.update_discovery(|s| s.revision = header.revision());
        }
        drop(alive);
        if changed && !apply(backend, config, etcd, &registered).await {
            return Ok(());
        }
    }
}

/// Makes `registered` the backend's endpoints, keeping those whose address
/// is unchanged and health-checking new ones first. False when the backend
/// is gone.
async fn apply(
    backend: &Weak<Backend>,
    config: &BackendConfig,
    etcd: &EtcdDiscovery,
    registered: &Registered,
) -> bool {
    let Some(alive) = backend.upgrade() else {
        return false;
    };
    alive.update_discovery(|s| s.instances = registered.len());
    let current = alive.endpoints();
    drop(alive);
    let fresh: Vec<Arc<Endpoint>> = selected(registered, etcd)
        .into_iter()
        .map(|uri| Endpoint::reuse_or_new(&current, uri.clone(), &uri, config))
        .collect();
    swap_in(
        backend,
        &current,
        fresh,
        "backend instances changed in etcd",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_every_registered_form() {
        // (value, tls, Ok((uri, metadata)) or Err(part of the error))
        type Case<'a> = (&'a str, bool, Result<(&'a str, &'a str), &'a str>);
        let cases: &[Case] = &[
            (
                "127.0.0.1:50051",
                false,
                Ok(("http://127.0.0.1:50051/", "{}")),
            ),
            (
                " 10.0.0.7:9000\n",
                true,
                Ok(("https://10.0.0.7:9000/", "{}")),
            ),
            (
                "http://orders-0.orders:50052",
                false,
                Ok(("http://orders-0.orders:50052/", "{}")),
            ),
            ("[::1]:50051", false, Ok(("http://[::1]:50051/", "{}"))),
            // go.etcd.io/etcd/client/v3/naming/endpoints, as AddEndpoint stores it.
            (
                r#"{"Addr":"127.0.0.1:50052","Metadata":{"version":"v2","weight":10}}"#,
                false,
                Ok(("http://127.0.0.1:50052/", r#"{"version":"v2","weight":10}"#)),
            ),
            // The older naming's update record, and a nil Metadata.
            (
                r#"{"Op":0,"Addr":"127.0.0.1:1","Metadata":null}"#,
                false,
                Ok(("http://127.0.0.1:1/", "{}")),
            ),
            (
                r#"{"Op":1,"Addr":"127.0.0.1:1"}"#,
                false,
                Err("marks a deletion"),
            ),
            (r#"{"Metadata":{}}"#, false, Err("no string \"Addr\"")),
            (r#"{"Addr":"#, false, Err("not JSON")),
            ("orders", false, Err("is not host:port")),
            ("127.0.0.1:1/path", false, Err("is not host:port")),
            ("", false, Err("is not host:port")),
        ];
        for (value, tls, want) in cases {
            let got = parse(value.as_bytes(), *tls);
            match (want, got) {
                (Ok((uri, metadata)), Ok(instance)) => {
                    assert_eq!(instance.uri.to_string(), *uri, "{value}");
                    assert_eq!(
                        Value::Object(instance.metadata).to_string(),
                        *metadata,
                        "{value}"
                    );
                }
                (Err(part), Err(e)) => assert!(e.contains(part), "{value}: {e}"),
                (want, got) => panic!("{value}: wanted {want:?}, got {got:?}"),
            }
        }
        assert!(parse(&[0xff, 0xfe], false).is_err());
    }

    #[test]
    fn metadata_selects_instances() {
        let instance = |json: &str| parse(json.as_bytes(), false).unwrap();
        let wanted = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let v2 = instance(
            r#"{"Addr":"127.0.0.1:2","Metadata":{"version":"v2","zone":1,"canary":true}}"#,
        );
        let plain = instance("127.0.0.1:3");
        assert!(matches(&v2, &wanted(&[])));
        assert!(matches(&plain, &wanted(&[])));
        assert!(matches(&v2, &wanted(&[("version", "v2")])));
        assert!(matches(
            &v2,
            &wanted(&[("version", "v2"), ("zone", "1"), ("canary", "true")])
        ));
        assert!(!matches(&v2, &wanted(&[("version", "v1")])));
        assert!(!matches(&v2, &wanted(&[("region", "eu")])));
        assert!(!matches(&plain, &wanted(&[("version", "v2")])));
    }
}
