//! The Redis provider against real `redis-server` processes on loopback ports. The
//! provider logs in as the `default` user, which has a password, so every test also
//! proves that it authenticates.

mod support;

use std::time::{Duration, Instant};

use cx_operator::provider::{
    ProviderError,
    redis::{RedisProvider, RedisSettings},
};
use redis::{ErrorKind, RedisResult, ServerErrorKind, aio::MultiplexedConnection};
use support::redis_server::{RedisServer, admin_password, free_port};

fn settings(nodes: &[&RedisServer]) -> RedisSettings {
    RedisSettings {
        nodes: nodes.iter().map(|s| s.url()).collect(),
        admin_username: Some("default".into()),
        admin_password: Some(admin_password().into()),
        ..RedisSettings::default()
    }
}

async fn provider_for(nodes: &[&RedisServer]) -> RedisProvider {
    RedisProvider::connect(settings(nodes)).await.expect("valid settings")
}

async fn query<T: redis::FromRedisValue>(connection: &mut MultiplexedConnection, args: &[&str]) -> RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await
}

#[track_caller]
fn assert_noperm<T: std::fmt::Debug>(result: RedisResult<T>, what: &str) {
    match result {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) => {}
        other => panic!("{what}: expected NOPERM, got {other:?}"),
    }
}

/// Writes `count` keys `<prefix><i>` with `value`, pipelined in batches.
async fn fill(connection: &mut MultiplexedConnection, prefix: &str, count: usize, value: &str) {
    for start in (0..count).step_by(1000) {
        let mut pipeline = redis::pipe();
        for i in start..(start + 1000).min(count) {
            pipeline.cmd("SET").arg(format!("{prefix}{i}")).arg(value).ignore();
        }
        pipeline.exec_async(connection).await.expect("pipelined SETs");
    }
}

/// How many `ACL SETUSER` commands the server has run.
async fn setuser_calls(server: &RedisServer) -> u64 {
    let info: String = query(&mut server.admin().await, &["INFO", "commandstats"]).await.expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_acl|setuser:calls="))
        .map(|rest| rest.split(',').next().unwrap_or_default().parse().expect("a count"))
        .unwrap_or(0)
}

async fn exists(connection: &mut MultiplexedConnection, key: &str) -> bool {
    query::<u64>(connection, &["EXISTS", key]).await.expect("EXISTS") == 1
}

#[tokio::test]
async fn a_tenant_reaches_only_its_own_keys_and_channels_and_no_admin_commands() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let (acme_password, acme2_password) = ("acme-password-0123456789abcdefghij", "acme2-password-0123456789abcdefghi");
    let created = provider.ensure_user("acme", acme_password, true, false).await.expect("ensure acme");
    assert_eq!(created, [format!("created Redis ACL user cx-acme on 127.0.0.1:{}", server.port())]);
    provider.ensure_user("acme2", acme2_password, true, false).await.expect("ensure acme2");

    let mut acme = server.connect_as("cx-acme", acme_password).await.expect("acme logs in");
    let _: () = query(&mut acme, &["SET", "acme:greeting", "hello"]).await.expect("own key");
    assert_eq!(query::<String>(&mut acme, &["GET", "acme:greeting"]).await.expect("own key"), "hello");
    let _: () = query(&mut acme, &["PUBLISH", "acme:events", "x"]).await.expect("own channel");

    let mut acme2 = server.connect_as("cx-acme2", acme2_password).await.expect("acme2 logs in");
    let _: () = query(&mut acme2, &["SET", "acme2:greeting", "hi"]).await.expect("own key");
    // `acme` is a prefix of `acme2`, but not of its key prefix.
    assert_noperm(query::<Option<String>>(&mut acme, &["GET", "acme2:greeting"]).await, "GET another tenant's key");
    assert_noperm(query::<()>(&mut acme, &["SET", "acme2:greeting", "x"]).await, "SET another tenant's key");
    assert_noperm(query::<()>(&mut acme, &["DEL", "acme2:greeting"]).await, "DEL another tenant's key");
    assert_noperm(query::<Option<String>>(&mut acme2, &["GET", "acme:greeting"]).await, "GET another tenant's key");
    assert_noperm(query::<Option<String>>(&mut acme, &["GET", "acme"]).await, "GET a key without the separator");
    assert_noperm(query::<u64>(&mut acme, &["PUBLISH", "acme2:events", "x"]).await, "PUBLISH to another tenant");
    for admin in [
        &["CONFIG", "GET", "requirepass"][..],
        &["ACL", "LIST"],
        &["ACL", "SETUSER", "cx-acme", "allkeys"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["KEYS", "*"],
        &["SHUTDOWN", "NOSAVE"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["SAVE"],
        &["FUNCTION", "FLUSH"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() return 1 end)"],
        &["SCRIPT", "FLUSH"],
        &["SCRIPT", "KILL"],
        &["CLIENT", "LIST"],
        &["MONITOR"],
    ] {
        assert_noperm(query::<redis::Value>(&mut acme, admin).await, &admin.join(" "));
    }
    let mut admin = server.admin().await;
    assert!(exists(&mut admin, "acme2:greeting").await, "the other tenant's key is untouched");
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_and_its_connections_are_closed() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let password = "disable-test-password-0123456789abcdef";
    provider.ensure_user("acme", password, true, false).await.expect("ensure");
    let mut open = server.connect_as("cx-acme", password).await.expect("logs in");
    assert_eq!(query::<String>(&mut open, &["PING"]).await.expect("PING"), "PONG");

    let disabled = provider.ensure_user("acme", password, false, false).await.expect("disable");
    let node = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        disabled,
        [
            format!("updated Redis ACL user cx-acme on {node} (disabled)"),
            format!("closed 1 connection(s) of disabled Redis ACL user cx-acme on {node}"),
        ]
    );
    assert!(query::<String>(&mut open, &["PING"]).await.is_err(), "the open connection is closed");
    assert!(server.connect_as("cx-acme", password).await.is_err(), "a disabled user cannot log in");
    assert_eq!(provider.ensure_user("acme", password, false, false).await.expect("again"), Vec::<String>::new());

    let enabled = provider.ensure_user("acme", password, true, false).await.expect("enable");
    assert_eq!(enabled, [format!("updated Redis ACL user cx-acme on {node} (enabled)")]);
    let mut again = server.connect_as("cx-acme", password).await.expect("logs in again");
    let _: () = query(&mut again, &["SET", "acme:k", "v"]).await.expect("writes again");
}

#[tokio::test]
async fn rotation_replaces_the_password() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let (old, new) = ("old-password-0123456789abcdefghijklmn", "new-password-0123456789abcdefghijklmn");
    provider.ensure_user("acme", old, true, false).await.expect("ensure");
    let rotated = provider.ensure_user("acme", new, true, false).await.expect("rotate");
    assert_eq!(rotated, [format!("updated Redis ACL user cx-acme on 127.0.0.1:{} (password)", server.port())]);
    assert!(rotated.iter().all(|op| !op.contains(new) && !op.contains(old)));
    assert!(server.connect_as("cx-acme", old).await.is_err(), "the old password no longer works");
    let mut connection = server.connect_as("cx-acme", new).await.expect("the new password works");
    let _: () = query(&mut connection, &["SET", "acme:k", "v"]).await.expect("write");
}

#[tokio::test]
async fn ensuring_an_unchanged_user_writes_nothing() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let password = "idempotent-password-0123456789abcdefgh";
    assert_eq!(provider.ensure_user("acme", password, true, false).await.expect("create").len(), 1);
    provider.ensure_user("beta", password, true, true).await.expect("create a read-only user");
    let before = setuser_calls(&server).await;
    assert!(before >= 2, "the users were written with ACL SETUSER ({before})");
    for _ in 0..3 {
        assert_eq!(provider.ensure_user("acme", password, true, false).await.expect("again"), Vec::<String>::new());
        assert_eq!(provider.ensure_user("beta", password, true, true).await.expect("again"), Vec::<String>::new());
    }
    assert_eq!(setuser_calls(&server).await, before, "no ACL SETUSER for unchanged users");

    // A new provider (an operator restart) reports no change either. Redis prints
    // command rules in its own form, so it learns that form once per rule set with
    // a scratch user, never by rewriting a tenant's user.
    let restarted = provider_for(&[&server]).await;
    assert_eq!(restarted.ensure_user("acme", password, true, false).await.expect("after restart"), Vec::<String>::new());
    assert_eq!(restarted.ensure_user("beta", password, true, true).await.expect("after restart"), Vec::<String>::new());
    assert_eq!(restarted.ensure_user("acme", password, true, false).await.expect("after restart"), Vec::<String>::new());
    assert!(setuser_calls(&server).await <= before + 2, "at most one scratch user per rule set");
    let users: Vec<String> = query(&mut server.admin().await, &["ACL", "USERS"]).await.expect("ACL USERS");
    assert_eq!(users, ["cx-acme", "cx-beta", "default"], "the scratch user is gone");
}

#[tokio::test]
async fn a_read_only_user_reads_but_cannot_write() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let password = "read-only-password-0123456789abcdefghi";
    provider.ensure_user("acme", password, true, false).await.expect("ensure");
    let mut connection = server.connect_as("cx-acme", password).await.expect("logs in");
    let _: () = query(&mut connection, &["SET", "acme:k", "v"]).await.expect("write while read-write");

    let changed = provider.ensure_user("acme", password, true, true).await.expect("read-only");
    assert_eq!(changed, [format!("updated Redis ACL user cx-acme on 127.0.0.1:{} (command rules)", server.port())]);
    assert_eq!(query::<String>(&mut connection, &["GET", "acme:k"]).await.expect("read"), "v");
    assert_eq!(query::<u64>(&mut connection, &["EXISTS", "acme:k"]).await.expect("read"), 1);
    assert_noperm(query::<()>(&mut connection, &["SET", "acme:k", "w"]).await, "SET when read-only");
    assert_noperm(query::<u64>(&mut connection, &["DEL", "acme:k"]).await, "DEL when read-only");
    assert_noperm(query::<u64>(&mut connection, &["PUBLISH", "acme:events", "x"]).await, "PUBLISH when read-only");
    // Commands run by a script are checked against the same rules; Redis reports
    // the refusal as a script error.
    let script = query::<redis::Value>(&mut connection, &["EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", "acme:k"]).await;
    assert!(script.is_err(), "a script that writes when read-only: {script:?}");
    assert_eq!(query::<String>(&mut connection, &["GET", "acme:k"]).await.expect("read"), "v");
    assert_noperm(query::<Option<String>>(&mut connection, &["GET", "beta:k"]).await, "the key limits still apply");

    provider.ensure_user("acme", password, true, false).await.expect("read-write again");
    let _: () = query(&mut connection, &["SET", "acme:k", "w"]).await.expect("write again");
}

#[tokio::test]
async fn purge_deletes_every_key_under_the_prefix_and_nothing_else() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let mut admin = server.admin().await;
    fill(&mut admin, "acme:", 10_000, "v").await;
    let own_with_glob_characters = ["acme:*", "acme:?x", "acme:[ab]", "acme:\\", "acme:{x}"];
    let others = ["acme2:1", "acme2:*", "acme", "acme*", "acme?:1", "acmea:1", "acme\\:1", "x:acme:1", "[acme]:1", "other"];
    for key in own_with_glob_characters.iter().chain(&others) {
        let _: () = query(&mut admin, &["SET", key, "v"]).await.expect("SET");
    }
    fill(&mut admin, "acme2:", 100, "v").await;

    let progress = provider.purge_keys("acme", 100_000).await.expect("purge");
    assert_eq!(progress.deleted, 10_000 + own_with_glob_characters.len() as u64);
    assert!(progress.done);
    for key in others {
        assert!(exists(&mut admin, key).await, "{key} is not under the prefix and must survive");
    }
    assert_eq!(query::<u64>(&mut admin, &["DBSIZE"]).await.expect("DBSIZE"), others.len() as u64 + 99);
    let again = provider.purge_keys("acme", 100_000).await.expect("purge again");
    assert_eq!((again.deleted, again.done), (0, true));
}

#[tokio::test]
async fn glob_characters_in_the_prefix_template_are_escaped() {
    let server = RedisServer::start();
    let settings = RedisSettings { key_prefix_template: "t[{tenant}]:".into(), ..settings(&[&server]) };
    let provider = RedisProvider::connect(settings).await.expect("valid settings");
    assert_eq!(provider.key_prefix("acme"), "t[acme]:");
    let mut admin = server.admin().await;
    // Unescaped, `t[acme]:*` would match `ta:1`, `tc:1`, `tm:1` and `te:1`.
    for key in ["t[acme]:1", "t[acme]:2", "ta:1", "tc:1", "tm:1", "te:1", "t[acme2]:1"] {
        let _: () = query(&mut admin, &["SET", key, "v"]).await.expect("SET");
    }
    let password = "glob-password-0123456789abcdefghijklm";
    provider.ensure_user("acme", password, true, false).await.expect("ensure");
    let mut acme = server.connect_as("cx-acme", password).await.expect("logs in");
    assert_eq!(query::<String>(&mut acme, &["GET", "t[acme]:1"]).await.expect("own key"), "v");
    assert_noperm(query::<Option<String>>(&mut acme, &["GET", "ta:1"]).await, "a key the unescaped pattern would match");

    let progress = provider.purge_keys("acme", 1000).await.expect("purge");
    assert_eq!((progress.deleted, progress.done), (2, true));
    for key in ["ta:1", "tc:1", "tm:1", "te:1", "t[acme2]:1"] {
        assert!(exists(&mut admin, key).await, "{key} must survive");
    }
}

#[tokio::test]
async fn purge_resumes_in_bounded_batches() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let mut admin = server.admin().await;
    fill(&mut admin, "acme:", 10_000, "v").await;
    fill(&mut admin, "beta:", 500, "v").await;

    let mut total = 0;
    let mut calls = 0;
    loop {
        let progress = provider.purge_keys("acme", 700).await.expect("purge");
        calls += 1;
        assert!(progress.deleted <= 700, "a call deletes at most its budget ({})", progress.deleted);
        total += progress.deleted;
        if progress.done {
            break;
        }
        assert!(calls < 100, "the purge makes progress");
    }
    assert_eq!(total, 10_000);
    assert!(calls >= 15, "10,000 keys take at least 15 calls of 700 ({calls})");
    assert_eq!(query::<u64>(&mut admin, &["DBSIZE"]).await.expect("DBSIZE"), 500);
}

#[tokio::test]
async fn every_node_gets_the_user_and_loses_it_on_delete() {
    let (first, second) = (RedisServer::start(), RedisServer::start());
    let provider = provider_for(&[&first, &second]).await;
    let password = "two-nodes-password-0123456789abcdefghi";
    let created = provider.ensure_user("acme", password, true, false).await.expect("ensure");
    assert_eq!(created.len(), 2, "{created:?}");
    let mut open = Vec::new();
    for server in [&first, &second] {
        let mut connection = server.connect_as("cx-acme", password).await.expect("logs in on every node");
        let _: () = query(&mut connection, &["SET", "acme:k", "v"]).await.expect("write");
        open.push(connection);
    }
    open.push(first.connect_as("cx-acme", password).await.expect("logs in"));

    let deleted = provider.delete_user("acme").await.expect("delete");
    assert_eq!(
        deleted,
        [
            format!("deleted Redis ACL user cx-acme on 127.0.0.1:{} (closed 2 connection(s))", first.port()),
            format!("deleted Redis ACL user cx-acme on 127.0.0.1:{} (closed 1 connection(s))", second.port()),
        ]
    );
    for connection in &mut open {
        assert!(query::<String>(connection, &["PING"]).await.is_err(), "connections of a deleted user are closed");
    }
    for server in [&first, &second] {
        assert!(server.connect_as("cx-acme", password).await.is_err(), "the user is gone");
    }
    assert_eq!(provider.delete_user("acme").await.expect("already gone"), Vec::<String>::new());

    let mut admin = first.admin().await;
    let _: () = query(&mut admin, &["SET", "acme:k2", "v"]).await.expect("SET");
    let progress = provider.purge_keys("acme", 100).await.expect("purge on both nodes");
    assert_eq!((progress.deleted, progress.done), (3, true));
}

#[tokio::test]
async fn usage_counts_the_keys_and_estimates_their_memory() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let mut admin = server.admin().await;
    let value = "x".repeat(100);
    fill(&mut admin, "acme:", 1234, &value).await;
    fill(&mut admin, "beta:", 700, &value).await;

    let usage = provider.usage("acme", 50).await.expect("usage");
    assert_eq!(usage.keys, 1234);
    assert_eq!(usage.sampled, 50);
    // A 100-byte string with its key and object headers takes a little more than
    // 100 bytes.
    assert!((1234 * 100..=1234 * 400).contains(&usage.bytes), "{usage:?}");

    let unsampled = provider.usage("acme", 0).await.expect("usage");
    assert_eq!((unsampled.keys, unsampled.bytes, unsampled.sampled), (1234, 0, 0));
    let empty = provider.usage("gamma", 10).await.expect("usage");
    assert_eq!((empty.keys, empty.bytes, empty.sampled), (0, 0, 0));
}

#[tokio::test]
async fn set_cardinality_counts_the_members() {
    let server = RedisServer::start();
    let provider = provider_for(&[&server]).await;
    let _: () = query(&mut server.admin().await, &["SADD", "acme:calls", "a", "b", "c"]).await.expect("SADD");
    assert_eq!(provider.set_cardinality("acme:calls").await.expect("SCARD"), 3);
    assert_eq!(provider.set_cardinality("acme:none").await.expect("SCARD"), 0);
}

#[tokio::test]
async fn a_node_that_is_down_is_unavailable_quickly() {
    let settings = RedisSettings {
        nodes: vec![format!("redis://127.0.0.1:{}", free_port())],
        admin_password: Some(admin_password().into()),
        ..RedisSettings::default()
    };
    let provider = RedisProvider::connect(settings).await.expect("connect does not need the node");
    let started = Instant::now();
    let error = provider.ensure_user("acme", "password-0123456789abcdefghijklmnopq", true, false).await.expect_err("node down");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(!error.to_string().contains(admin_password()), "{error}");
    assert!(matches!(provider.purge_keys("acme", 10).await, Err(ProviderError::Unavailable { .. })));
}

#[tokio::test]
async fn a_node_that_does_not_answer_times_out() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("address").port();
    let _held = std::thread::spawn(move || listener.incoming().flatten().collect::<Vec<_>>());
    let settings = RedisSettings {
        nodes: vec![format!("redis://127.0.0.1:{port}")],
        admin_password: Some(admin_password().into()),
        ..RedisSettings::default()
    };
    let provider = RedisProvider::connect(settings).await.expect("valid settings");
    let started = Instant::now();
    let error = provider.delete_user("acme").await.expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error}");
}

#[tokio::test]
async fn a_wrong_admin_password_is_refused_without_showing_it() {
    let server = RedisServer::start();
    let wrong = "wrong-admin-password-0123456789abcdef";
    let settings = RedisSettings { admin_password: Some(wrong.into()), ..settings(&[&server]) };
    let provider = RedisProvider::connect(settings).await.expect("valid settings");
    let error = provider.ensure_user("acme", "password-0123456789abcdefghijklmnopq", true, false).await.expect_err("wrong password");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("admin credentials were rejected"), "{error}");
    assert!(!error.to_string().contains(wrong), "{error}");
}

#[tokio::test]
async fn acl_save_writes_the_acl_file_and_is_refused_without_one() {
    let server = RedisServer::start_with_acl_file();
    let settings = RedisSettings { acl_save: true, ..settings(&[&server]) };
    let provider = RedisProvider::connect(settings.clone()).await.expect("valid settings");
    let password = "saved-password-0123456789abcdefghijklm";
    provider.ensure_user("acme", password, true, false).await.expect("ensure with ACL SAVE");
    let file = std::fs::read_to_string(server_acl_file(&server)).expect("ACL file");
    assert!(file.lines().any(|l| l.starts_with("user cx-acme on ")), "{file}");
    assert!(!file.contains(password), "the file holds only the digest");
    provider.delete_user("acme").await.expect("delete with ACL SAVE");
    let file = std::fs::read_to_string(server_acl_file(&server)).expect("ACL file");
    assert!(!file.contains("cx-acme"), "{file}");

    let without_file = RedisServer::start();
    let settings = RedisSettings { acl_save: true, ..self::settings(&[&without_file]) };
    let provider = RedisProvider::connect(settings).await.expect("valid settings");
    let error = provider.ensure_user("acme", password, true, false).await.expect_err("no ACL file");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("no ACL file"), "{error}");
}

fn server_acl_file(server: &RedisServer) -> std::path::PathBuf {
    server.dir().join("users.acl")
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let server = RedisServer::start();
    for (prefix, rules) in [
        ("{tenant}", vec!["~{prefix}*"]),
        ("static:", vec!["~{prefix}*"]),
        ("{tenant}:", vec!["~{prefix}*", "nopass"]),
        ("{tenant}:", vec!["~{prefix}*", ">password"]),
        ("{tenant}:", vec!["~{prefix}* +@all"]),
    ] {
        let settings = RedisSettings {
            key_prefix_template: prefix.into(),
            acl_rules_template: rules.iter().map(|r| r.to_string()).collect(),
            ..settings(&[&server])
        };
        assert!(matches!(RedisProvider::connect(settings).await, Err(ProviderError::Refused { .. })), "{prefix} {rules:?}");
    }
    let provider = provider_for(&[&server]).await;
    assert!(matches!(provider.ensure_user("Not A Label", "p", true, false).await, Err(ProviderError::Refused { .. })));
    let settings = RedisSettings { acl_rules_template: vec!["~{prefix}*".into(), "+@nosuchcategory".into()], ..settings(&[&server]) };
    let provider = RedisProvider::connect(settings).await.expect("the server judges categories");
    let error = provider.ensure_user("acme", "password-0123456789abcdefghijklmnopq", true, false).await.expect_err("bad category");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error}");
}
