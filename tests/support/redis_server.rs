//! Starts a real `redis-server` for a test: on a free loopback port, in its own
//! temporary directory, with the `default` user protected by a random password (so
//! tests prove that the provider authenticates). The server is stopped on drop.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use rand::distr::{Alphanumeric, SampleString};
use redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};

/// How long a starting server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a port clash (another process took the port between choosing and
/// binding it) is retried with a new port.
const START_ATTEMPTS: usize = 5;

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: String,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server whose `default` user has a password (`requirepass`). Every
    /// server of a test process has the same password, [`admin_password`], so one
    /// provider can manage several of them.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// Starts a server that keeps its users in an ACL file, so `ACL SAVE` works; the
    /// `default` user is defined there with a password.
    pub fn start_with_acl_file() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(acl_file: bool) -> RedisServer {
        ensure_installed();
        let password = admin_password().to_string();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
            let mut server = RedisServer { child: None, port: free_port(), password: password.clone(), dir };
            server.spawn(acl_file);
            if server.wait_until_ready() {
                return server;
            }
            last_log = server.log();
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts; its last log:\n{last_log}");
    }

    fn spawn(&mut self, acl_file: bool) {
        let dir = self.dir.path();
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(self.log_path());
        if acl_file {
            let acl_path = dir.join("users.acl");
            let digest = hex::encode(Sha256::digest(self.password.as_bytes()));
            std::fs::write(&acl_path, format!("user default on #{digest} ~* &* +@all\n")).expect("write the ACL file");
            command.arg("--aclfile").arg(&acl_path);
        } else {
            command.arg("--requirepass").arg(&self.password);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
        self.child = Some(child);
    }

    /// Waits for `PING` to succeed; false when the server exited (port clash) or
    /// did not answer in time.
    fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.admin_url()) else { return false };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return false };
        redis::cmd("PING").query::<String>(&mut connection).is_ok()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `default` user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's URL with the admin (`default`) credentials.
    pub fn admin_url(&self) -> String {
        format!("redis://default:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// A connection as the admin, for the test's own checks.
    pub async fn admin(&self) -> MultiplexedConnection {
        self.connect_as("default", &self.password).await.expect("admin connection")
    }

    /// A connection as `user`; fails when the server rejects the login.
    pub async fn connect_as(&self, user: &str, password: &str) -> redis::RedisResult<MultiplexedConnection> {
        let url = format!("redis://{user}:{password}@127.0.0.1:{}", self.port);
        redis::Client::open(url)?.get_multiplexed_async_connection().await
    }

    /// The server's working directory (the ACL file is `users.acl` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts a stopped server again on the same port, empty (like a node that lost
    /// its memory), for outage tests. Only for servers from [`RedisServer::start`].
    pub fn restart(&mut self) {
        self.stop();
        self.spawn(false);
        assert!(self.wait_until_ready(), "redis-server did not restart on port {}; its log:\n{}", self.port, self.log());
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `default` user's password on every server this process starts.
pub fn admin_password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| Alphanumeric.sample_string(&mut rand::rng(), 32))
}

/// Fails the test with instructions when `redis-server` cannot be run.
fn ensure_installed() {
    let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !matches!(found, Ok(status) if status.success()) {
        panic!(
            "redis-server is not installed or not on PATH; the Redis provider tests need it (Debian/Ubuntu: apt-get install -y redis-server)"
        );
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}
