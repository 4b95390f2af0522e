//! `shop --etcd`: the binary registers its four backends in a real etcd
//! (Debian's `etcd-server`) under one lease, in the Go endpoints JSON
//! format, and its keys are gone once it stops (Ctrl-C revokes the lease).

use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The keys under `/services/` and their values, once `done` holds for them.
async fn keys_until(
    url: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    for _ in 0..600 {
        if let Ok(mut client) = etcd_client::Client::connect([url], None).await
            && let Ok(got) = client
                .get(
                    "/services/",
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
        {
            let kvs: Vec<(String, String)> = got
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    )
                })
                .collect();
            if done(&kvs) {
                return kvs;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("etcd never held the expected keys");
}

/// A child process killed when dropped, so a failed assertion leaves none behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn shop_registers_its_backends_in_etcd_and_leaves_when_stopped() {
    let dir = std::env::temp_dir().join(format!("shop-etcd-{}", std::process::id()));
    let (client_port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let _etcd = Killed(
        Command::new("etcd")
            .args([
                "--name=test".to_owned(),
                format!("--data-dir={}", dir.display()),
                format!("--listen-client-urls={url}"),
                format!("--advertise-client-urls={url}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=test={peer}"),
                "--logger=zap".to_owned(),
                "--log-level=error".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd runs (Debian's etcd-server)"),
    );
    keys_until(&url, |_| true).await;

    let mut shop = Killed(
        Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["--etcd", &url, "--version-tag", "v2", "--ttl", "30"])
            .args(["--users", "127.0.0.1:0", "--orders", "127.0.0.1:0"])
            .args(["--inventory", "127.0.0.1:0", "--users-v2", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let kvs = keys_until(&url, |kvs| kvs.len() == 4).await;
    for (name, (key, value)) in ["inventory", "orders", "users-v2", "users"]
        .iter()
        .zip(&kvs)
    {
        let addr = key
            .strip_prefix(&format!("/services/{name}/"))
            .unwrap_or_else(|| panic!("{key} is not under /services/{name}/"));
        let json: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(json["Addr"], addr, "{value}");
        assert_eq!(json["Metadata"]["version"], "v2", "{value}");
        // The registered address serves.
        assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr}");
    }

    // Ctrl-C: the lease is revoked and the keys go with it.
    let stopped = Command::new("kill")
        .args(["-INT", &shop.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    keys_until(&url, <[_]>::is_empty).await;
    assert!(shop.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
