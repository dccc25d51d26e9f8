//! Redis: one ACL user per tenant, limited to the tenant's key prefix and channels.
//!
//! Every configured node (a primary, its replicas, the nodes of a cluster) keeps its
//! own ACL table, so the provider writes the same user to each of them. The user is
//! named `cx-<tenant>` (see [`USER_PREFIX`]); the operator treats every ACL user with
//! that prefix as its own, so no other tool should create users with it.
//!
//! A user is always written whole with `ACL SETUSER <user> reset ...`, so no rule
//! from an earlier version survives a change. The password is sent as its SHA-256
//! (`#<hex>`), so the cleartext never reaches the server, its logs or `MONITOR`.
//!
//! Connections to the nodes are opened on first use, not in [`RedisProvider::connect`],
//! so the operator starts while Redis is down and reports the outage per tenant.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    sync::Mutex,
    time::Duration,
};

use futures::future::join_all;
use rand::Rng;
use redis::{
    Client, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError, ServerErrorKind, TlsCertificates, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use serde_json::json;

use super::{PlannedObject, ProviderError, password};

/// The backend name used in errors.
const BACKEND: &str = "redis";

/// The prefix of every ACL user the operator manages.
pub const USER_PREFIX: &str = "cx-";

/// The default key prefix: the tenant id and a colon.
pub const DEFAULT_KEY_PREFIX_TEMPLATE: &str = "{tenant}:";

/// The default ACL rules: the tenant's keys and channels, every command except the
/// administrative and dangerous ones, and except those that change state every
/// tenant shares: functions (one server-wide library namespace, `FUNCTION FLUSH`
/// deletes all of them) and `SCRIPT FLUSH` / `SCRIPT KILL`, which `-@dangerous` does
/// not cover.
pub fn default_acl_rules() -> Vec<String> {
    ["~{prefix}*", "&{prefix}*", "+@all", "-@admin", "-@dangerous", "-function", "-script|flush", "-script|kill"].map(String::from).to_vec()
}

/// Rules appended for a read-only tenant. They come after the template's rules, so
/// they win: no command that writes keys, and no publishing. Commands run from
/// scripts and functions are checked against the same rules, so they cannot write
/// either.
const READ_ONLY_RULES: [&str; 3] = ["-@write", "-publish", "-spublish"];

/// How long opening a connection (TCP, TLS and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one command or pipeline may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The `COUNT` hint of every `SCAN`: how much of the key space one call walks.
const SCAN_COUNT: usize = 1000;

/// A scratch user used to learn how a node prints a set of command rules. Its name
/// has an underscore, which a tenant id (a DNS label) cannot have, so it never
/// collides with a tenant's user.
const PROBE_USER: &str = "cx_operator_probe";

/// Where and how the tenants' Redis users are provisioned.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URLs; every node gets the same ACL users (replicas,
    /// cluster nodes).
    pub nodes: Vec<String>,
    /// The admin user (`None`: the user in the URL, or `default`).
    pub admin_username: Option<String>,
    /// The admin password, from a Secret; never logged.
    pub admin_password: Option<String>,
    /// The key prefix of a tenant; `{tenant}` is replaced by the tenant id. It must
    /// contain `{tenant}` exactly once, followed by a character that cannot occur in
    /// a tenant id, so that no tenant's prefix is a prefix of another's.
    pub key_prefix_template: String,
    /// The ACL rules of a tenant's user: key patterns (`~`, `%R~`, `%W~`, `allkeys`,
    /// `resetkeys`), channel patterns (`&`, `allchannels`, `resetchannels`) and
    /// command rules (`+`, `-`, `allcommands`, `nocommands`). `{prefix}` is replaced by
    /// the key prefix with its glob characters escaped, `{tenant}` by the tenant id.
    pub acl_rules_template: Vec<String>,
    /// Run `ACL SAVE` after changing a node, for servers that keep users in an ACL
    /// file (`aclfile`). A server without one refuses, which is reported as an error.
    pub acl_save: bool,
    /// A PEM CA bundle to verify `rediss://` nodes with, instead of the system roots.
    pub ca_pem: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            nodes: Vec::new(),
            admin_username: None,
            admin_password: None,
            key_prefix_template: DEFAULT_KEY_PREFIX_TEMPLATE.to_string(),
            acl_rules_template: default_acl_rules(),
            acl_save: false,
            ca_pem: None,
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Node URLs may embed credentials, so only their number is shown.
        f.debug_struct("RedisSettings")
            .field("nodes", &self.nodes.len())
            .field("admin_username", &self.admin_username)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix_template", &self.key_prefix_template)
            .field("acl_rules_template", &self.acl_rules_template)
            .field("acl_save", &self.acl_save)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

/// The result of one [`RedisProvider::purge_keys`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeProgress {
    /// Keys deleted by this call.
    pub deleted: u64,
    /// Whether a complete walk of every primary found no key left under the prefix.
    pub done: bool,
}

/// What a tenant stores in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// Keys under the tenant's prefix.
    pub keys: u64,
    /// Their memory, extrapolated from the sampled keys.
    pub bytes: u64,
    /// How many keys were measured with `MEMORY USAGE`.
    pub sampled: u64,
}

/// Provisions tenants' ACL users on a set of Redis nodes.
pub struct RedisProvider {
    nodes: Vec<Node>,
    key_prefix_template: String,
    acl_rules_template: Vec<String>,
    acl_save: bool,
    /// Unfinished purges by tenant: where each node's walk stands.
    purges: Mutex<HashMap<String, Vec<Walk>>>,
}

impl fmt::Debug for RedisProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisProvider").field("nodes", &self.nodes.iter().map(|n| &n.label).collect::<Vec<_>>()).finish()
    }
}

impl RedisProvider {
    /// Validates the settings and prepares one connection manager per node. No
    /// connection is opened yet: each node is connected on first use.
    pub async fn connect(settings: RedisSettings) -> Result<Self, ProviderError> {
        validate_settings(&settings)?;
        let nodes =
            settings.nodes.iter().enumerate().map(|(index, url)| Node::new(index, url, &settings)).collect::<Result<Vec<_>, _>>()?;
        Ok(RedisProvider {
            nodes,
            key_prefix_template: settings.key_prefix_template,
            acl_rules_template: settings.acl_rules_template,
            acl_save: settings.acl_save,
            purges: Mutex::new(HashMap::new()),
        })
    }

    /// The ACL user of a tenant: `cx-<tenant>`.
    pub fn user_name(&self, tenant: &str) -> String {
        format!("{USER_PREFIX}{tenant}")
    }

    /// The key prefix of a tenant, from the template (`acme:` by default).
    pub fn key_prefix(&self, tenant: &str) -> String {
        self.key_prefix_template.replace("{tenant}", tenant)
    }

    /// The ACL user the tenant gets, as `cx-operator plan` shows it.
    pub fn plan(&self, tenant: &str) -> PlannedObject {
        let user = self.user_name(tenant);
        PlannedObject {
            kind: "aclUser".into(),
            name: user.clone(),
            settings: json!({
                "user": user,
                "prefix": self.key_prefix(tenant),
                "rules": self.rules(tenant, false),
                "nodes": self.nodes.iter().map(|n| n.label.clone()).collect::<Vec<_>>(),
            }),
        }
    }

    /// Makes the tenant's user match on every node: its password, its rules and
    /// whether it is enabled. `active = false` turns the user off and closes its open
    /// connections; `read_only = true` takes away every write command within the same
    /// key and channel limits. A node is written only where it differs. Returns the
    /// operations done (empty when nothing changed), without the password.
    ///
    /// Every node is tried even when one fails, so that disabling a tenant takes
    /// effect wherever it can; the first failure is then returned.
    pub async fn ensure_user(&self, tenant: &str, password: &str, active: bool, read_only: bool) -> Result<Vec<String>, ProviderError> {
        crate::provider::check_tenant_id(BACKEND, tenant)?;
        let desired = self.desired_acl(tenant, password, active, read_only);
        let results = join_all(self.nodes.iter().map(|node| self.ensure_on_node(node, &desired))).await;
        collect_operations(results)
    }

    /// Deletes the tenant's user on every node and closes its connections; a user
    /// that does not exist is success.
    pub async fn delete_user(&self, tenant: &str) -> Result<Vec<String>, ProviderError> {
        crate::provider::check_tenant_id(BACKEND, tenant)?;
        let user = self.user_name(tenant);
        let results = join_all(self.nodes.iter().map(|node| self.delete_on_node(node, &user))).await;
        collect_operations(results)
    }

    /// Deletes up to `max_keys` keys under the tenant's prefix on every primary, with
    /// `SCAN MATCH` and `UNLINK`. Call it again until `done`: the walk resumes where the
    /// previous call stopped. Only keys that start with the prefix match; its glob
    /// characters are escaped. A key written under the prefix while a walk is under
    /// way may be missed, so the tenant's user should be deleted first.
    pub async fn purge_keys(&self, tenant: &str, max_keys: usize) -> Result<PurgeProgress, ProviderError> {
        crate::provider::check_tenant_id(BACKEND, tenant)?;
        let pattern = format!("{}*", glob_escape(&self.key_prefix(tenant)));
        let saved = self.purges.lock().unwrap_or_else(|e| e.into_inner()).remove(tenant);
        let mut walks = saved.unwrap_or_else(|| vec![Walk::Start; self.nodes.len()]);
        let mut deleted = 0u64;
        let mut failure = None;
        for (node, walk) in self.nodes.iter().zip(walks.iter_mut()) {
            let budget = max_keys.saturating_sub(usize::try_from(deleted).unwrap_or(usize::MAX));
            match purge_on_node(node, walk, &pattern, budget).await {
                Ok(count) => deleted += count,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let done = failure.is_none() && walks.iter().all(|w| *w == Walk::Done);
        if !done {
            // Kept also after a failure, so the next call resumes instead of restarting.
            self.purges.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant.to_string(), walks);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(PurgeProgress { deleted, done }),
        }
    }

    /// Counts the keys under the tenant's prefix on every primary and estimates their
    /// memory from `MEMORY USAGE` of at most `sample` keys chosen uniformly at random.
    /// The count walks the key space with `SCAN` (incremental, never blocking the
    /// server); it is exact unless the key space shrinks during the walk, when Redis
    /// may return a key twice.
    pub async fn usage(&self, tenant: &str, sample: usize) -> Result<CacheUsage, ProviderError> {
        crate::provider::check_tenant_id(BACKEND, tenant)?;
        let pattern = format!("{}*", glob_escape(&self.key_prefix(tenant)));
        let mut reservoir = Reservoir::new(sample);
        for (index, node) in self.nodes.iter().enumerate() {
            if node.is_primary().await? {
                count_on_node(node, index, &pattern, &mut reservoir).await?;
            }
        }
        let mut measured = 0u64;
        let mut sampled = 0u64;
        for (index, node) in self.nodes.iter().enumerate() {
            let keys: Vec<&[u8]> = reservoir.items.iter().filter(|(i, _)| *i == index).map(|(_, k)| k.as_slice()).collect();
            let (bytes, count) = node.memory_usage(&keys).await?;
            measured += bytes;
            sampled += count;
        }
        let bytes = if sampled == 0 { 0 } else { extrapolate(measured, sampled, reservoir.seen) };
        Ok(CacheUsage { keys: reservoir.seen, bytes, sampled })
    }

    /// The number of members of a set (`SCARD`), from the first node that holds the
    /// key; a node that redirects (`MOVED`) is skipped.
    pub async fn set_cardinality(&self, key: &str) -> Result<u64, ProviderError> {
        let mut command = redis::cmd("SCARD");
        command.arg(key);
        for node in &self.nodes {
            match node.try_query::<u64>(&command).await {
                Ok(count) => return Ok(count),
                Err(Failure::Redis(e)) if e.redirect_node().is_some() => continue,
                Err(failure) => return Err(node.error("SCARD", failure)),
            }
        }
        Err(ProviderError::Unavailable { backend: BACKEND, message: format!("no configured node holds the key {key}") })
    }

    /// The tenant's rules with `{prefix}` and `{tenant}` filled in, plus the
    /// read-only restrictions when asked for.
    fn rules(&self, tenant: &str, read_only: bool) -> Vec<String> {
        let prefix = glob_escape(&self.key_prefix(tenant));
        let mut rules: Vec<String> =
            self.acl_rules_template.iter().map(|rule| rule.replace("{prefix}", &prefix).replace("{tenant}", tenant)).collect();
        if read_only {
            rules.extend(READ_ONLY_RULES.map(String::from));
        }
        rules
    }

    fn desired_acl(&self, tenant: &str, password: &str, active: bool, read_only: bool) -> DesiredAcl {
        let rules = self.rules(tenant, read_only);
        DesiredAcl {
            user: self.user_name(tenant),
            enabled: active,
            password_sha256: password::sha256_hex(password),
            keys: canonical_patterns(&rules, RuleKind::Keys),
            channels: canonical_patterns(&rules, RuleKind::Channels),
            commands: rules.iter().filter(|r| classify_rule(r) == Some(RuleKind::Commands)).cloned().collect(),
            rules,
        }
    }

    async fn ensure_on_node(&self, node: &Node, desired: &DesiredAcl) -> Result<Vec<String>, ProviderError> {
        let mut operations = Vec::new();
        let actual = node.get_user(&desired.user).await?;
        let changes = match &actual {
            None => Some(format!("created Redis ACL user {} on {}", desired.user, node.label)),
            Some(actual) => {
                let differences = self.differences(node, desired, actual).await?;
                (!differences.is_empty())
                    .then(|| format!("updated Redis ACL user {} on {} ({})", desired.user, node.label, differences.join(", ")))
            }
        };
        if let Some(operation) = changes {
            node.set_user(desired).await?;
            tracing::info!(node = %node.label, user = %desired.user, "{operation}");
            operations.push(operation);
            if self.acl_save {
                node.save_acl().await?;
            }
        }
        if !desired.enabled {
            let closed = node.kill_connections(&desired.user).await?;
            if closed > 0 {
                let operation = format!("closed {closed} connection(s) of disabled Redis ACL user {} on {}", desired.user, node.label);
                tracing::info!(node = %node.label, user = %desired.user, "{operation}");
                operations.push(operation);
            }
        }
        Ok(operations)
    }

    /// What differs between the desired and the actual user, by name.
    async fn differences(&self, node: &Node, desired: &DesiredAcl, actual: &AclUser) -> Result<Vec<&'static str>, ProviderError> {
        let mut differences = Vec::new();
        if actual.enabled != desired.enabled {
            differences.push(if desired.enabled { "enabled" } else { "disabled" });
        }
        if actual.nopass || actual.passwords != [desired.password_sha256.clone()] {
            differences.push("password");
        }
        if actual.keys != desired.keys {
            differences.push("key patterns");
        }
        if actual.channels != desired.channels {
            differences.push("channel patterns");
        }
        if actual.selectors > 0 {
            differences.push("selectors");
        }
        if !node.commands_match(&desired.commands, &actual.commands).await? {
            differences.push("command rules");
        }
        Ok(differences)
    }

    async fn delete_on_node(&self, node: &Node, user: &str) -> Result<Vec<String>, ProviderError> {
        // Redis also closes a deleted user's connections, but closing them first
        // reports how many there were and does not depend on the server version.
        let closed = node.kill_connections(user).await?;
        let mut command = redis::cmd("ACL");
        command.arg("DELUSER").arg(user);
        let removed: u64 = node.query(&command, "ACL DELUSER").await?;
        if removed == 0 {
            return Ok(Vec::new());
        }
        if self.acl_save {
            node.save_acl().await?;
        }
        let operation = format!("deleted Redis ACL user {user} on {} (closed {closed} connection(s))", node.label);
        tracing::info!(node = %node.label, user, "{operation}");
        Ok(vec![operation])
    }
}

/// Concatenates the operations of every node, or returns the first failure.
fn collect_operations(results: Vec<Result<Vec<String>, ProviderError>>) -> Result<Vec<String>, ProviderError> {
    let mut operations = Vec::new();
    for result in results {
        operations.extend(result?);
    }
    Ok(operations)
}

/// Where one node's `SCAN` walk of a purge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// Not started: the node's role is checked first.
    Start,
    /// Resume from this cursor.
    At(u64),
    /// The walk went round the whole key space (or the node is a replica).
    Done,
}

/// Deletes up to `budget` matching keys on one node, advancing its walk. Returns
/// how many keys were deleted.
async fn purge_on_node(node: &Node, walk: &mut Walk, pattern: &str, budget: usize) -> Result<u64, ProviderError> {
    let mut deleted = 0u64;
    let mut remaining = budget;
    while remaining > 0 {
        let cursor = match *walk {
            Walk::Done => break,
            Walk::At(cursor) => cursor,
            Walk::Start => {
                if !node.is_primary().await? {
                    // Replicas follow their primary, which is purged itself.
                    *walk = Walk::Done;
                    break;
                }
                0
            }
        };
        let (next, keys) = node.scan(cursor, pattern).await?;
        if keys.len() > remaining {
            // Deleting part of this batch and leaving the walk at `cursor` makes the
            // next call see the rest of the batch again.
            deleted += node.unlink(&keys[..remaining]).await?;
            return Ok(deleted);
        }
        deleted += node.unlink(&keys).await?;
        remaining -= keys.len();
        *walk = if next == 0 { Walk::Done } else { Walk::At(next) };
    }
    Ok(deleted)
}

/// Walks one node's key space, counting the matching keys into `reservoir`.
async fn count_on_node(node: &Node, index: usize, pattern: &str, reservoir: &mut Reservoir) -> Result<(), ProviderError> {
    let mut cursor = 0;
    loop {
        let (next, keys) = node.scan(cursor, pattern).await?;
        for key in keys {
            reservoir.offer(index, key);
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A uniform random sample of a stream of keys (Algorithm R), with the count of
/// keys seen.
struct Reservoir {
    capacity: usize,
    seen: u64,
    items: Vec<(usize, Vec<u8>)>,
}

impl Reservoir {
    fn new(capacity: usize) -> Self {
        Reservoir { capacity, seen: 0, items: Vec::new() }
    }

    fn offer(&mut self, node: usize, key: Vec<u8>) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push((node, key));
        } else if self.capacity > 0 {
            let slot = rand::rng().random_range(0..self.seen);
            if let Ok(slot) = usize::try_from(slot)
                && slot < self.capacity
            {
                self.items[slot] = (node, key);
            }
        }
    }
}

/// `measured` bytes over `sampled` keys, scaled to `total` keys.
fn extrapolate(measured: u64, sampled: u64, total: u64) -> u64 {
    let scaled = u128::from(measured) * u128::from(total) / u128::from(sampled.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// The user a tenant should have on every node.
#[derive(Debug)]
struct DesiredAcl {
    user: String,
    enabled: bool,
    password_sha256: String,
    /// Every rule, in order, as written with `ACL SETUSER`.
    rules: Vec<String>,
    keys: BTreeSet<String>,
    channels: BTreeSet<String>,
    /// The command rules, in order.
    commands: Vec<String>,
}

/// A user as `ACL GETUSER` reports it.
#[derive(Debug, Default, PartialEq, Eq)]
struct AclUser {
    enabled: bool,
    nopass: bool,
    passwords: Vec<String>,
    commands: String,
    keys: BTreeSet<String>,
    channels: BTreeSet<String>,
    selectors: usize,
}

/// What an ACL rule restricts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleKind {
    Keys,
    Channels,
    Commands,
}

/// The kind of a template rule, or `None` for rules a template may not contain
/// (passwords, `on`/`off`, `reset`, selectors, flags): the provider sets those.
fn classify_rule(rule: &str) -> Option<RuleKind> {
    match rule {
        "allkeys" | "resetkeys" => Some(RuleKind::Keys),
        "allchannels" | "resetchannels" => Some(RuleKind::Channels),
        "allcommands" | "nocommands" => Some(RuleKind::Commands),
        _ if rule.starts_with('~') || (rule.starts_with('%') && rule.contains('~')) => Some(RuleKind::Keys),
        _ if rule.starts_with('&') => Some(RuleKind::Channels),
        _ if rule.len() > 1 && (rule.starts_with('+') || rule.starts_with('-')) => Some(RuleKind::Commands),
        _ => None,
    }
}

/// The key or channel patterns a list of rules leaves a user with, in the form
/// `ACL GETUSER` prints them (`allkeys` is `~*`, `%RW~` is `~`).
fn canonical_patterns(rules: &[String], kind: RuleKind) -> BTreeSet<String> {
    let mut patterns = BTreeSet::new();
    for rule in rules.iter().filter(|r| classify_rule(r) == Some(kind)) {
        match rule.as_str() {
            "resetkeys" | "resetchannels" => patterns.clear(),
            "allkeys" => {
                patterns.clear();
                patterns.insert("~*".to_string());
            }
            "allchannels" => {
                patterns.clear();
                patterns.insert("&*".to_string());
            }
            _ => {
                let canonical =
                    ["%RW~", "%WR~"].iter().find_map(|p| rule.strip_prefix(p)).map_or_else(|| rule.clone(), |rest| format!("~{rest}"));
                patterns.insert(canonical);
            }
        }
    }
    patterns
}

/// Escapes the characters Redis glob patterns (`SCAN MATCH`, ACL key and channel
/// patterns) treat specially, so the text matches only itself.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Parses an `ACL GETUSER` reply (a flat array in RESP2, a map in RESP3; Redis 6
/// lists patterns as arrays, Redis 7 as strings). `None` when the user does not exist.
fn parse_acl_user(value: Value) -> Option<AclUser> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Nil => return None,
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        _ => return None,
    };
    let mut user = AclUser::default();
    let mut flags = Vec::new();
    for (field, value) in pairs {
        match text(&field).as_str() {
            "flags" => flags = texts(&value),
            "passwords" => user.passwords = texts(&value),
            "commands" => user.commands = text(&value),
            "keys" => user.keys = patterns(&value, '~'),
            "channels" => user.channels = patterns(&value, '&'),
            "selectors" => user.selectors = if let Value::Array(selectors) | Value::Set(selectors) = &value { selectors.len() } else { 0 },
            _ => {}
        }
    }
    user.enabled = flags.iter().any(|f| f == "on");
    user.nopass = flags.iter().any(|f| f == "nopass");
    // Redis 6 reports unrestricted keys and channels as flags.
    if flags.iter().any(|f| f == "allkeys") {
        user.keys.insert("~*".into());
    }
    if flags.iter().any(|f| f == "allchannels") {
        user.channels.insert("&*".into());
    }
    Some(user)
}

/// A scalar reply as text.
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Okay => "OK".into(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// An array or set reply as texts.
fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().map(text).filter(|t| !t.is_empty()).collect(),
        _ => Vec::new(),
    }
}

/// Key or channel patterns, from a space-separated string (Redis 7) or an array of
/// bare patterns (Redis 6, which omits the `~` / `&`).
fn patterns(value: &Value, sigil: char) -> BTreeSet<String> {
    match value {
        Value::Array(_) | Value::Set(_) => {
            texts(value).into_iter().map(|p| if p.starts_with(sigil) || p.starts_with('%') { p } else { format!("{sigil}{p}") }).collect()
        }
        _ => text(value).split_whitespace().map(String::from).collect(),
    }
}

/// Why a command to a node failed.
enum Failure {
    /// No answer in time.
    Timeout(Duration),
    /// The client or the server reported an error.
    Redis(RedisError),
}

/// One Redis node and its lazily opened connection.
struct Node {
    /// `host:port`, the only form of the node's address that is ever shown.
    label: String,
    client: Client,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// The admin password, only to make sure it never appears in a message.
    admin_password: Option<String>,
    /// How this node prints a set of command rules (the rules joined by spaces →
    /// the `commands` field of `ACL GETUSER`). Redis rewrites rules into its own
    /// form (`+@all -@admin -@dangerous` is shown as `+@all -@dangerous`), so the
    /// provider learns each form once instead of guessing it.
    printed_commands: Mutex<HashMap<String, String>>,
    /// Held while the scratch user exists, so that two reconciles never probe
    /// different rules with it at once.
    probe: tokio::sync::Mutex<()>,
}

impl Node {
    fn new(index: usize, url: &str, settings: &RedisSettings) -> Result<Node, ProviderError> {
        // The URL is never echoed: it may carry a password.
        let refused = |message: String| ProviderError::Refused { backend: BACKEND, message };
        let info =
            url.into_connection_info().map_err(|_| refused(format!("node {} is not a valid redis:// or rediss:// URL", index + 1)))?;
        let label = info.addr().to_string();
        let mut redis_settings = info.redis_settings().clone();
        if let Some(username) = &settings.admin_username {
            redis_settings = redis_settings.set_username(username);
        }
        if let Some(password) = &settings.admin_password {
            redis_settings = redis_settings.set_password(password);
        }
        let is_tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        let info = info.set_redis_settings(redis_settings);
        let client = match &settings.ca_pem {
            Some(ca) if is_tls => {
                let certificates = TlsCertificates { client_tls: None, root_cert: Some(ca.clone().into_bytes()) };
                Client::build_with_tls(info, certificates)
                    .map_err(|e| refused(format!("node {label}: the CA bundle cannot be used: {e}")))?
            }
            _ => Client::open(info).map_err(|e| refused(format!("node {label}: {e}")))?,
        };
        Ok(Node {
            label,
            client,
            manager: tokio::sync::Mutex::new(None),
            admin_password: settings.admin_password.clone().filter(|p| !p.is_empty()),
            printed_commands: Mutex::new(HashMap::new()),
            probe: tokio::sync::Mutex::new(()),
        })
    }

    /// The node's connection manager, opening it on first use. A failed attempt is
    /// not kept, so the next call tries again.
    async fn connection(&self) -> Result<ConnectionManager, Failure> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        // The manager retries once inside; the outer bound covers both attempts.
        let limit = CONNECT_TIMEOUT * 2 + Duration::from_secs(1);
        let manager = tokio::time::timeout(limit, ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|_| Failure::Timeout(limit))?
            .map_err(Failure::Redis)?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Forgets the connection after an error the manager does not recover from by
    /// itself (its reconnects only follow I/O errors, not a rejected login).
    async fn forget_connection_after(&self, error: &RedisError) {
        if error.kind() == ErrorKind::AuthenticationFailed || error.is_io_error() {
            *self.manager.lock().await = None;
        }
    }

    async fn try_query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, Failure> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<T>(&mut connection)).await {
            Err(_) => Err(Failure::Timeout(COMMAND_TIMEOUT)),
            Ok(Err(e)) => {
                self.forget_connection_after(&e).await;
                Err(Failure::Redis(e))
            }
            Ok(Ok(value)) => Ok(value),
        }
    }

    async fn query<T: FromRedisValue>(&self, command: &Cmd, what: &str) -> Result<T, ProviderError> {
        self.try_query(command).await.map_err(|failure| self.error(what, failure))
    }

    async fn query_pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline, what: &str) -> Result<T, ProviderError> {
        let mut connection = self.connection().await.map_err(|f| self.error(what, f))?;
        match tokio::time::timeout(COMMAND_TIMEOUT, pipeline.query_async::<T>(&mut connection)).await {
            Err(_) => Err(self.error(what, Failure::Timeout(COMMAND_TIMEOUT))),
            Ok(Err(e)) => {
                self.forget_connection_after(&e).await;
                Err(self.error(what, Failure::Redis(e)))
            }
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Classifies a failure: a rejected login or a missing permission of the admin
    /// cannot be fixed by retrying; everything else (unreachable, slow, loading, out
    /// of memory, server errors) can.
    fn error(&self, what: &str, failure: Failure) -> ProviderError {
        let error = match failure {
            Failure::Timeout(limit) => {
                let message = format!("node {}: {what} got no answer within {} s", self.label, limit.as_secs());
                return ProviderError::Unavailable { backend: BACKEND, message };
            }
            Failure::Redis(error) => error,
        };
        let detail = self.redact(&error.to_string());
        if error.kind() == ErrorKind::AuthenticationFailed || matches!(error.code(), Some("WRONGPASS" | "NOAUTH")) {
            let message = format!("node {}: the admin credentials were rejected ({detail})", self.label);
            return ProviderError::Refused { backend: BACKEND, message };
        }
        if error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) || error.code() == Some("NOPERM") {
            let message = format!("node {}: the admin user may not run {what} ({detail})", self.label);
            return ProviderError::Refused { backend: BACKEND, message };
        }
        if error.kind() == ErrorKind::InvalidClientConfig {
            return ProviderError::Refused { backend: BACKEND, message: format!("node {}: {detail}", self.label) };
        }
        ProviderError::Unavailable { backend: BACKEND, message: format!("node {}: {what} failed: {detail}", self.label) }
    }

    /// Replaces the admin password wherever it appears; error texts come from the
    /// client and the server, and neither is trusted to leave it out.
    fn redact(&self, text: &str) -> String {
        match &self.admin_password {
            Some(password) => text.replace(password.as_str(), "<redacted>"),
            None => text.to_string(),
        }
    }

    async fn get_user(&self, user: &str) -> Result<Option<AclUser>, ProviderError> {
        let mut command = redis::cmd("ACL");
        command.arg("GETUSER").arg(user);
        Ok(parse_acl_user(self.query::<Value>(&command, "ACL GETUSER").await?))
    }

    /// Writes the user whole, then reads it back to learn how this node prints its
    /// command rules.
    async fn set_user(&self, desired: &DesiredAcl) -> Result<(), ProviderError> {
        let mut command = redis::cmd("ACL");
        command.arg("SETUSER").arg(&desired.user).arg("reset").arg(if desired.enabled { "on" } else { "off" });
        command.arg(format!("#{}", desired.password_sha256)).arg(&desired.rules);
        self.set_user_command(&command).await?;
        if let Some(written) = self.get_user(&desired.user).await? {
            self.remember_printed_commands(&desired.commands, written.commands.clone());
            if written.keys != desired.keys || written.channels != desired.channels {
                tracing::warn!(node = %self.label, user = %desired.user, "the node reports other key or channel patterns than were written; they will be rewritten on every reconcile");
            }
        }
        Ok(())
    }

    /// Runs an `ACL SETUSER`; an `ERR` reply means a rule was not accepted, which a
    /// retry cannot fix.
    async fn set_user_command(&self, command: &Cmd) -> Result<(), ProviderError> {
        match self.try_query::<()>(command).await {
            Ok(()) => Ok(()),
            Err(Failure::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => {
                let message = format!("node {}: the ACL rules were rejected: {}", self.label, self.redact(&e.to_string()));
                Err(ProviderError::Refused { backend: BACKEND, message })
            }
            Err(failure) => Err(self.error("ACL SETUSER", failure)),
        }
    }

    fn remember_printed_commands(&self, commands: &[String], printed: String) {
        self.printed_commands.lock().unwrap_or_else(|e| e.into_inner()).insert(commands.join(" "), printed);
    }

    /// Whether `actual` (the `commands` field of `ACL GETUSER`) is how this node
    /// prints `commands`. The first time a set of rules is printed differently from
    /// how it is written, a scratch user shows the node's form.
    async fn commands_match(&self, commands: &[String], actual: &str) -> Result<bool, ProviderError> {
        let written = commands.join(" ");
        if actual == written {
            return Ok(true);
        }
        let known = self.printed_commands.lock().unwrap_or_else(|e| e.into_inner()).get(&written).cloned();
        let printed = match known {
            Some(printed) => printed,
            None => self.probe_printed_commands(commands).await?,
        };
        Ok(actual == printed)
    }

    /// Applies `commands` to a scratch user that is off and has no password (so
    /// nobody can log in as it), reads how the node prints them, and deletes it.
    async fn probe_printed_commands(&self, commands: &[String]) -> Result<String, ProviderError> {
        let _probing = self.probe.lock().await;
        let mut command = redis::cmd("ACL");
        command.arg("SETUSER").arg(PROBE_USER).arg("reset").arg("off").arg(commands);
        self.set_user_command(&command).await?;
        let probed = self.get_user(PROBE_USER).await;
        let mut delete = redis::cmd("ACL");
        delete.arg("DELUSER").arg(PROBE_USER);
        self.query::<u64>(&delete, "ACL DELUSER").await?;
        let printed = probed?.map(|user| user.commands).unwrap_or_default();
        self.remember_printed_commands(commands, printed.clone());
        Ok(printed)
    }

    /// Closes the user's connections; returns how many there were. A user that does
    /// not exist has none.
    async fn kill_connections(&self, user: &str) -> Result<u64, ProviderError> {
        let mut command = redis::cmd("CLIENT");
        command.arg("KILL").arg("USER").arg(user);
        match self.try_query::<u64>(&command).await {
            Ok(closed) => Ok(closed),
            Err(Failure::Redis(e)) if e.to_string().contains("No such user") => Ok(0),
            Err(failure) => Err(self.error("CLIENT KILL USER", failure)),
        }
    }

    /// Persists the ACL to the server's ACL file.
    async fn save_acl(&self) -> Result<(), ProviderError> {
        match self.try_query::<()>(redis::cmd("ACL").arg("SAVE")).await {
            Ok(()) => Ok(()),
            Err(Failure::Redis(e)) if e.to_string().contains("not configured to use an ACL file") => Err(ProviderError::Refused {
                backend: BACKEND,
                message: format!(
                    "node {}: acl_save is set but the server has no ACL file (aclfile); configure one or turn acl_save off",
                    self.label
                ),
            }),
            Err(failure) => Err(self.error("ACL SAVE", failure)),
        }
    }

    /// Whether the node is a primary (`ROLE`); replicas refuse writes and hold a copy
    /// of their primary's keys.
    async fn is_primary(&self) -> Result<bool, ProviderError> {
        let role: Value = self.query(&redis::cmd("ROLE"), "ROLE").await?;
        Ok(match role {
            Value::Array(items) => items.first().is_some_and(|r| text(r) == "master"),
            _ => true,
        })
    }

    /// One `SCAN` step: the next cursor and the matching keys.
    async fn scan(&self, cursor: u64, pattern: &str) -> Result<(u64, Vec<Vec<u8>>), ProviderError> {
        let mut command = redis::cmd("SCAN");
        command.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
        self.query(&command, "SCAN").await
    }

    /// Deletes keys, one `UNLINK` each (a cluster refuses multi-key commands across
    /// slots), pipelined. Returns how many existed.
    async fn unlink(&self, keys: &[Vec<u8>]) -> Result<u64, ProviderError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("UNLINK").arg(key);
        }
        let removed: Vec<u64> = self.query_pipeline(&pipeline, "UNLINK").await?;
        Ok(removed.iter().sum())
    }

    /// `MEMORY USAGE` of each key, pipelined: the total bytes and how many keys still
    /// existed.
    async fn memory_usage(&self, keys: &[&[u8]]) -> Result<(u64, u64), ProviderError> {
        if keys.is_empty() {
            return Ok((0, 0));
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("MEMORY").arg("USAGE").arg(*key);
        }
        let sizes: Vec<Option<u64>> = self.query_pipeline(&pipeline, "MEMORY USAGE").await?;
        let present: Vec<u64> = sizes.into_iter().flatten().collect();
        Ok((present.iter().sum(), present.len() as u64))
    }
}

fn validate_settings(settings: &RedisSettings) -> Result<(), ProviderError> {
    let refused = |message: String| Err(ProviderError::Refused { backend: BACKEND, message });
    if settings.nodes.is_empty() {
        return refused("no Redis node is configured".into());
    }
    validate_prefix_template(&settings.key_prefix_template).or_else(refused)?;
    for rule in &settings.acl_rules_template {
        if rule.chars().any(char::is_whitespace) || classify_rule(rule).is_none() {
            return refused(format!(
                "ACL rule {rule:?} is not allowed in the template: only key (~, %R~, %W~, allkeys, resetkeys), channel (&, allchannels, \
                 resetchannels) and command (+, -, allcommands, nocommands) rules are; the operator sets passwords and on/off itself"
            ));
        }
    }
    Ok(())
}

/// The prefix template must name the tenant exactly once and follow it with a
/// character no tenant id contains: with `{tenant}` alone, `acme*` would also match
/// the keys of `acme2`.
fn validate_prefix_template(template: &str) -> Result<(), String> {
    if template.chars().any(char::is_whitespace) {
        return Err(format!("key prefix template {template:?} contains whitespace"));
    }
    if template.matches("{tenant}").count() != 1 {
        return Err(format!("key prefix template {template:?} must contain {{tenant}} exactly once"));
    }
    let after = template.split_once("{tenant}").map(|(_, after)| after).unwrap_or_default();
    match after.chars().next() {
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') => Ok(()),
        _ => Err(format!(
            "key prefix template {template:?} must follow {{tenant}} with a separator such as ':' so that no tenant's prefix starts another's"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("acme:"), "acme:");
        assert_eq!(glob_escape(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }

    #[test]
    fn prefix_templates_must_separate_tenants() {
        assert!(validate_prefix_template("{tenant}:").is_ok());
        assert!(validate_prefix_template("cx/{tenant}/").is_ok());
        assert!(validate_prefix_template("{tenant}").is_err());
        assert!(validate_prefix_template("{tenant}-x:").is_err());
        assert!(validate_prefix_template("static:").is_err());
        assert!(validate_prefix_template("{tenant}:{tenant}:").is_err());
        assert!(validate_prefix_template("{tenant}: ").is_err());
    }

    #[test]
    fn templates_may_not_set_passwords_or_flags() {
        for rule in ["on", "off", "nopass", ">secret", "#abc", "reset", "resetpass", "(~x* +get)", "skip-sanitize-payload", "-"] {
            assert_eq!(classify_rule(rule), None, "{rule}");
        }
        assert_eq!(classify_rule("%R~acme:*"), Some(RuleKind::Keys));
        assert_eq!(classify_rule("&acme:*"), Some(RuleKind::Channels));
        assert_eq!(classify_rule("-@dangerous"), Some(RuleKind::Commands));
    }

    #[test]
    fn patterns_are_compared_in_the_servers_form() {
        let rules: Vec<String> = ["~a*", "%RW~b*", "%R~c*", "resetkeys", "~d*", "allchannels"].map(String::from).to_vec();
        assert_eq!(canonical_patterns(&rules, RuleKind::Keys), BTreeSet::from(["~d*".to_string()]));
        assert_eq!(canonical_patterns(&rules, RuleKind::Channels), BTreeSet::from(["&*".to_string()]));
        let rules: Vec<String> = ["~a*", "%RW~b*", "%R~c*"].map(String::from).to_vec();
        assert_eq!(canonical_patterns(&rules, RuleKind::Keys), BTreeSet::from(["~a*", "~b*", "%R~c*"].map(String::from)));
    }

    #[test]
    fn getuser_replies_of_redis_7_are_parsed() {
        let reply = Value::Array(vec![
            bulk("flags"),
            Value::Array(vec![bulk("on"), bulk("sanitize-payload")]),
            bulk("passwords"),
            Value::Array(vec![bulk("2bb8")]),
            bulk("commands"),
            bulk("+@all -@dangerous"),
            bulk("keys"),
            bulk("~acme:* %R~shared:*"),
            bulk("channels"),
            bulk("&acme:*"),
            bulk("selectors"),
            Value::Array(vec![]),
        ]);
        let user = parse_acl_user(reply).expect("a user");
        assert!(user.enabled && !user.nopass);
        assert_eq!(user.passwords, ["2bb8"]);
        assert_eq!(user.commands, "+@all -@dangerous");
        assert_eq!(user.keys, BTreeSet::from(["~acme:*", "%R~shared:*"].map(String::from)));
        assert_eq!(user.channels, BTreeSet::from(["&acme:*".to_string()]));
        assert_eq!(user.selectors, 0);
        assert_eq!(parse_acl_user(Value::Nil), None);
    }

    #[test]
    fn getuser_replies_of_redis_6_are_parsed() {
        let reply = Value::Map(vec![
            (bulk("flags"), Value::Set(vec![bulk("off"), bulk("allchannels")])),
            (bulk("passwords"), Value::Array(vec![])),
            (bulk("commands"), bulk("-@all")),
            (bulk("keys"), Value::Array(vec![bulk("acme:*")])),
            (bulk("channels"), Value::Array(vec![])),
        ]);
        let user = parse_acl_user(reply).expect("a user");
        assert!(!user.enabled);
        assert_eq!(user.keys, BTreeSet::from(["~acme:*".to_string()]));
        assert_eq!(user.channels, BTreeSet::from(["&*".to_string()]));
    }

    #[test]
    fn extrapolation_scales_the_sample() {
        assert_eq!(extrapolate(1000, 10, 100), 10_000);
        assert_eq!(extrapolate(u64::MAX, 1, 2), u64::MAX);
    }

    #[test]
    fn the_reservoir_keeps_at_most_its_capacity() {
        let mut reservoir = Reservoir::new(5);
        for i in 0..1000u32 {
            reservoir.offer(0, i.to_be_bytes().to_vec());
        }
        assert_eq!(reservoir.seen, 1000);
        assert_eq!(reservoir.items.len(), 5);
        let mut empty = Reservoir::new(0);
        empty.offer(0, b"k".to_vec());
        assert_eq!((empty.seen, empty.items.len()), (1, 0));
    }

    #[test]
    fn tenant_ids_are_dns_labels() {
        assert!(crate::provider::check_tenant_id(BACKEND, "acme-2").is_ok());
        for bad in ["", "-a", "a-", "Acme", "a b", "a:b", "a*"] {
            assert!(crate::provider::check_tenant_id(BACKEND, bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn settings_are_validated_without_connecting() {
        let settings =
            |nodes: Vec<&str>| RedisSettings { nodes: nodes.into_iter().map(String::from).collect(), ..RedisSettings::default() };
        assert!(RedisProvider::connect(settings(vec![])).await.is_err());
        let error = RedisProvider::connect(settings(vec!["http://user:hunter2@x"])).await.expect_err("not a redis URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let provider = RedisProvider::connect(settings(vec!["redis://127.0.0.1:1", "rediss://cache:6380"])).await.expect("valid");
        let plan = provider.plan("acme");
        assert_eq!(plan.kind, "aclUser");
        assert_eq!(plan.name, "cx-acme");
        assert_eq!(
            plan.settings,
            json!({
                "user": "cx-acme",
                "prefix": "acme:",
                "rules": ["~acme:*", "&acme:*", "+@all", "-@admin", "-@dangerous", "-function", "-script|flush", "-script|kill"],
                "nodes": ["127.0.0.1:1", "cache:6380"],
            })
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let settings =
            RedisSettings { nodes: vec!["redis://:hunter2@h".into()], admin_password: Some("hunter2".into()), ..RedisSettings::default() };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
