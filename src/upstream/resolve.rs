//! Endpoints from configured addresses: an IP address is one endpoint; a
//! host name stands for every address it resolves to, resolved at startup
//! and again every `dns_refresh` in a task that ends with the backend.
//!
//! Endpoints whose address is unchanged are kept across refreshes, with
//! their connections and health state.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

use http::Uri;

use super::backend::Backend;
use super::endpoint::Endpoint;
use crate::config::BackendConfig;

/// Whether some configured address is a host name.
pub fn has_host_names(config: &BackendConfig) -> bool {
    config.endpoints.iter().any(|uri| ip_of(uri).is_none())
}

/// The endpoints for `config`, reusing those of `current` with the same address.
/// A host name that does not resolve keeps the endpoints it had (none at startup).
pub async fn endpoints(config: &BackendConfig, current: &[Arc<Endpoint>]) -> Vec<Arc<Endpoint>> {
    endpoints_with(config, current, |host, port| async move {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(Iterator::collect)
    })
    .await
}

/// [`endpoints`] with the resolver given, so tests can change its answers.
async fn endpoints_with<F, Fut>(
    config: &BackendConfig,
    current: &[Arc<Endpoint>],
    lookup: F,
) -> Vec<Arc<Endpoint>>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    let mut out: Vec<Arc<Endpoint>> = Vec::new();
    for origin in &config.endpoints {
        let addresses: Vec<SocketAddr> = match ip_of(origin) {
            Some(ip) => vec![SocketAddr::new(ip, port_of(origin))],
            None => {
                let host = origin.host().unwrap_or_default();
                // The resolver's own timeout can be long; a reload must not hang on it.
                let answer = tokio::time::timeout(
                    config.connect_timeout,
                    lookup(host.to_owned(), port_of(origin)),
                )
                .await
                .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut)));
                match answer {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(backend = %config.name, %host, error = %e, "cannot resolve backend host; keeping its last addresses");
                        out.extend(current.iter().filter(|c| c.origin == *origin).cloned());
                        continue;
                    }
                }
            }
        };
        for addr in addresses {
            let scheme = origin.scheme_str().unwrap_or("http");
            let uri = match format!("{scheme}://{addr}").parse::<Uri>() {
                Ok(uri) => uri,
                Err(_) => continue,
            };
            let address = uri.to_string();
            if out
                .iter()
                .any(|e| e.address == address.trim_end_matches('/'))
            {
                continue;
            }
            out.push(Endpoint::reuse_or_new(current, uri, origin, config));
        }
    }
    out
}

/// Re-resolves the backend's host names every `dns_refresh` until it is dropped.
pub fn start(backend: &Arc<Backend>) {
    let weak = Arc::downgrade(backend);
    let task = tokio::spawn(run(weak, backend.config.clone()));
    backend.adopt(task.abort_handle());
}

async fn run(backend: Weak<Backend>, config: BackendConfig) {
    loop {
        tokio::time::sleep(config.dns_refresh).await;
        let Some(current) = backend.upgrade().map(|b| b.endpoints()) else {
            return;
        };
        let fresh = endpoints(&config, &current).await;
        if !super::backend::swap_in(&backend, &current, fresh, "backend addresses changed").await {
            return;
        }
    }
}

fn ip_of(uri: &Uri) -> Option<IpAddr> {
    uri.host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn port_of(uri: &Uri) -> u16 {
    // Config validation requires a port.
    uri.port_u16().unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn refresh_keeps_known_addresses_adds_new_ones_and_survives_failures() {
        let config = crate::config::parse(
            "descriptors:\n  protos: [x.proto]\nbackends:\n  users:\n    endpoints: [http://users.internal:50051, http://127.0.0.9:50051]\n    services: [a.B]\n",
            std::path::Path::new("gateway.yaml"),
        )
        .unwrap()
        .backends
        .remove(0);
        assert!(has_host_names(&config));
        let answers: Mutex<Vec<std::io::Result<Vec<SocketAddr>>>> = Mutex::new(vec![
            Err(std::io::Error::other("resolver down")),
            Ok(vec![
                "127.0.0.3:50051".parse().unwrap(),
                "127.0.0.4:50051".parse().unwrap(),
            ]),
            Ok(vec![
                "127.0.0.2:50051".parse().unwrap(),
                "127.0.0.3:50051".parse().unwrap(),
            ]),
        ]);
        let asked: Mutex<Vec<(String, u16)>> = Mutex::new(Vec::new());
        let lookup = |host: String, port: u16| {
            asked.lock().unwrap().push((host, port));
            let answer = answers.lock().unwrap().pop().unwrap();
            async move { answer }
        };
        let addresses = |eps: &[Arc<Endpoint>]| -> Vec<String> {
            eps.iter().map(|e| e.address.clone()).collect()
        };

        let first = endpoints_with(&config, &[], &lookup).await;
        assert_eq!(
            addresses(&first),
            [
                "http://127.0.0.2:50051",
                "http://127.0.0.3:50051",
                "http://127.0.0.9:50051"
            ]
        );
        assert_eq!(first[0].origin, "http://users.internal:50051");
        // Only the host name is looked up, with its port.
        assert_eq!(
            *asked.lock().unwrap(),
            [("users.internal".to_owned(), 50051)]
        );

        let second = endpoints_with(&config, &first, &lookup).await;
        assert_eq!(
            addresses(&second),
            [
                "http://127.0.0.3:50051",
                "http://127.0.0.4:50051",
                "http://127.0.0.9:50051"
            ]
        );
        // Unchanged addresses keep their endpoint (connection, health state).
        assert!(Arc::ptr_eq(&second[0], &first[1]));
        assert!(Arc::ptr_eq(&second[2], &first[2]));

        // A failed lookup keeps what the host had.
        let third = endpoints_with(&config, &second, &lookup).await;
        assert_eq!(addresses(&third), addresses(&second));
        assert!(third.iter().zip(&second).all(|(a, b)| Arc::ptr_eq(a, b)));
    }
}
