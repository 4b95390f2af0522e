//! Real etcd and Redis servers for the tests (Debian's `etcd-server` and
//! `redis-server`; `.ci/run` installs them), each on free loopback ports
//! with its data in the target directory, stopped when dropped. Both can be
//! stopped and started again on the same ports, for the outage tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::support::eventually;

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn data_dir(kind: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{kind}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a data directory");
    dir
}

fn spawn(program: &str, args: &[String], package: &str) -> Child {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} ({e}); install Debian's {package}"))
}

/// An etcd server of one member.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Self {
        let mut etcd = Self {
            child: None,
            dir: data_dir("etcd"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.resume().await;
        etcd
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A client.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.url()], None)
            .await
            .expect("an etcd client")
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data, and waits until it answers.
    pub async fn resume(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let args = [
            "--name=test".to_owned(),
            format!("--data-dir={}", self.dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=test={peer}"),
            "--logger=zap".to_owned(),
            "--log-level=error".to_owned(),
        ];
        self.child = Some(spawn("etcd", &args, "etcd-server"));
        let url = self.url();
        eventually(60, "etcd answers", || {
            let url = url.clone();
            async move {
                match etcd_client::Client::connect([url], None).await {
                    Ok(mut c) => c.get("probe", None).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server without persistence.
pub struct Redis {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Redis {
    /// Starts Redis and waits until it answers.
    pub async fn start() -> Self {
        let mut redis = Self {
            child: None,
            dir: data_dir("redis"),
            port: free_port(),
        };
        redis.resume().await;
        redis
    }

    /// The URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, and waits until it answers.
    pub async fn resume(&mut self) {
        let args = [
            "--port".to_owned(),
            self.port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            self.dir.display().to_string(),
        ];
        self.child = Some(spawn("redis-server", &args, "redis-server"));
        let url = self.url();
        eventually(60, "redis answers", || {
            let url = url.clone();
            async move { ping(&url).await }
        })
        .await;
    }
}

/// Whether Redis at `url` answers a PING.
async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    match client.get_multiplexed_async_connection().await {
        Ok(mut c) => redis::cmd("PING").query_async::<()>(&mut c).await.is_ok(),
        Err(_) => false,
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
