//! An in-memory MongoDB that answers the commands the MongoDB provider sends with
//! the reply shapes and error codes of a real server (`{ok: 1}`; `usersInfo` with a
//! `users` array; `dbStats` with its size fields; 51003 UserAlreadyExists, 11
//! UserNotFound, 31 RoleNotFound, 59 CommandNotFound, 11000 DuplicateKey). Users are
//! kept apart from databases, as in `admin.system.users`, so `dropDatabase` leaves
//! them. A client whose URI has other credentials than the server's admin gets 13
//! Unauthorized on every command. Every command is recorded, so tests can check that
//! a call wrote nothing.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use cx_operator::provider::mongodb::{MongoBackend, MongoError};
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};

/// The admin user of every fake server.
pub const ADMIN_USER: &str = "root";
/// The admin password of every fake server.
pub const ADMIN_PASSWORD: &str = "fake-admin-password-0123456789";

/// The built-in database roles the fake knows; any other is RoleNotFound.
const BUILTIN_ROLES: [&str; 6] = ["read", "readWrite", "dbAdmin", "dbOwner", "userAdmin", "enableSharding"];

/// Commands that change state; `find` and the read commands do not.
const WRITE_COMMANDS: [&str; 6] = ["createUser", "updateUser", "dropUser", "dropDatabase", "insert", "dropAllUsersFromDatabase"];

/// One command the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// The database it ran in.
    pub db: String,
    /// The command name (`find` and `insert` for the collection calls).
    pub name: String,
    /// The command document.
    pub command: Document,
}

#[derive(Clone, Debug)]
struct User {
    id: ObjectId,
    password: String,
    roles: Vec<(String, String)>,
    custom_data: Option<Document>,
}

#[derive(Default)]
struct State {
    /// Database → collection → documents.
    databases: BTreeMap<String, BTreeMap<String, Vec<Document>>>,
    /// (database, user) → user.
    users: BTreeMap<(String, String), User>,
    log: Vec<Recorded>,
    down: bool,
}

/// An in-memory MongoDB server.
#[derive(Default)]
pub struct MemoryMongo {
    state: Mutex<State>,
}

impl MemoryMongo {
    /// An empty server.
    pub fn new() -> Arc<MemoryMongo> {
        Arc::new(MemoryMongo::default())
    }

    /// A connection URI with the admin credentials.
    pub fn uri(&self) -> String {
        format!("mongodb://{ADMIN_USER}:{ADMIN_PASSWORD}@fake-mongodb:27017/?authSource=admin")
    }

    /// A client connecting with the credentials of `uri`: the admin's are
    /// authorized, any others get 13 Unauthorized.
    pub fn client(self: &Arc<Self>, uri: &str) -> Arc<dyn MongoBackend> {
        let authorized = credentials(uri) == Some((ADMIN_USER.to_string(), ADMIN_PASSWORD.to_string()));
        Arc::new(MemoryClient { server: Arc::clone(self), authorized })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every command received so far.
    pub fn commands(&self) -> Vec<Recorded> {
        self.state().log.clone()
    }

    /// The names of the commands received so far that change state.
    pub fn write_commands(&self) -> Vec<String> {
        self.state().log.iter().filter(|r| WRITE_COMMANDS.contains(&r.name.as_str())).map(|r| r.name.clone()).collect()
    }

    /// Forgets the commands received so far.
    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// While down, every call fails with 6 HostUnreachable.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Whether `user` of `db` can log in with `password`.
    pub fn login(&self, db: &str, user: &str, password: &str) -> bool {
        self.state().users.get(&(db.to_string(), user.to_string())).is_some_and(|u| u.password == password)
    }

    /// The roles of `user` of `db` as `(role, db)`, if the user exists.
    pub fn roles(&self, db: &str, user: &str) -> Option<Vec<(String, String)>> {
        self.state().users.get(&(db.to_string(), user.to_string())).map(|u| u.roles.clone())
    }

    /// Whether the database holds any collection.
    pub fn database_exists(&self, db: &str) -> bool {
        self.state().databases.get(db).is_some_and(|collections| !collections.is_empty())
    }

    /// Inserts a document directly, without recording a command (test setup).
    pub fn seed(&self, db: &str, collection: &str, document: Document) {
        self.state().databases.entry(db.to_string()).or_default().entry(collection.to_string()).or_default().push(document);
    }

    /// Creates a user directly, without recording a command (test setup).
    pub fn seed_user(&self, db: &str, user: &str, password: &str, custom_data: Option<Document>) {
        let user_doc = User { id: ObjectId::new(), password: password.to_string(), roles: Vec::new(), custom_data };
        self.state().users.insert((db.to_string(), user.to_string()), user_doc);
    }

    fn execute(&self, db: &str, command: Document) -> Result<Document, MongoError> {
        let name = command.keys().next().cloned().unwrap_or_default();
        let mut state = self.state();
        match name.as_str() {
            "createUser" => create_user(&mut state, db, &command),
            "updateUser" => update_user(&mut state, db, &command),
            "dropUser" => drop_user(&mut state, db, &command),
            "usersInfo" => Ok(users_info(&state, db, &command)),
            "dbStats" => Ok(db_stats(&state, db)),
            "dropDatabase" => {
                state.databases.remove(db);
                Ok(doc! { "ok": 1.0 })
            }
            "ping" => Ok(doc! { "ok": 1.0 }),
            "count" => Ok(count(&state, db, &command)),
            _ => Err(MongoError::new(MongoError::COMMAND_NOT_FOUND, format!("no such command: '{name}'"))),
        }
    }
}

/// A connection to a [`MemoryMongo`] with some credentials.
struct MemoryClient {
    server: Arc<MemoryMongo>,
    authorized: bool,
}

impl MemoryClient {
    /// Records the command, then refuses it when the server is down or the client
    /// is not authorized.
    fn admit(&self, db: &str, name: &str, command: &Document) -> Result<(), MongoError> {
        let mut state = self.server.state();
        if state.down {
            return Err(MongoError::new(MongoError::HOST_UNREACHABLE, "connection refused"));
        }
        state.log.push(Recorded { db: db.to_string(), name: name.to_string(), command: command.clone() });
        if !self.authorized {
            return Err(MongoError::new(MongoError::UNAUTHORIZED, format!("Command {name} requires authentication")));
        }
        Ok(())
    }
}

#[async_trait]
impl MongoBackend for MemoryClient {
    async fn run_command(&self, db: &str, command: Document) -> Result<Document, MongoError> {
        let name = command.keys().next().cloned().unwrap_or_default();
        self.admit(db, &name, &command)?;
        self.server.execute(db, command)
    }

    async fn find_one(&self, db: &str, collection: &str, filter: Document) -> Result<Option<Document>, MongoError> {
        self.admit(db, "find", &doc! { "find": collection, "filter": filter.clone(), "limit": 1 })?;
        let state = self.server.state();
        let documents = state.databases.get(db).and_then(|c| c.get(collection));
        Ok(documents.and_then(|docs| docs.iter().find(|d| filter.iter().all(|(k, v)| d.get(k) == Some(v))).cloned()))
    }

    async fn insert_one(&self, db: &str, collection: &str, mut document: Document) -> Result<(), MongoError> {
        self.admit(db, "insert", &doc! { "insert": collection, "documents": [document.clone()] })?;
        if !document.contains_key("_id") {
            document.insert("_id", ObjectId::new());
        }
        let mut state = self.server.state();
        let documents = state.databases.entry(db.to_string()).or_default().entry(collection.to_string()).or_default();
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        if documents.iter().any(|d| d.get("_id") == Some(&id)) {
            return Err(MongoError::new(
                MongoError::DUPLICATE_KEY,
                format!("E11000 duplicate key error collection: {db}.{collection} index: _id_ dup key: {{ _id: {id} }}"),
            ));
        }
        documents.push(document);
        Ok(())
    }
}

/// The user and password of a `mongodb://user:password@host` URI.
fn credentials(uri: &str) -> Option<(String, String)> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    let (user, password) = userinfo.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn user_key(db: &str, command: &Document, field: &str) -> Result<(String, String), MongoError> {
    let user = command.get_str(field).map_err(|_| MongoError::new(MongoError::BAD_VALUE, format!("{field} must be a string")))?;
    Ok((db.to_string(), user.to_string()))
}

fn not_found(db: &str, user: &str) -> MongoError {
    MongoError::new(MongoError::USER_NOT_FOUND, format!("User '{user}@{db}' not found"))
}

/// Roles as `(role, db)`: a document names its database, a string means a role of
/// the database the command runs in.
fn parse_roles(db: &str, command: &Document) -> Result<Option<Vec<(String, String)>>, MongoError> {
    let Some(roles) = command.get("roles") else { return Ok(None) };
    let Bson::Array(roles) = roles else { return Err(MongoError::new(MongoError::BAD_VALUE, "roles must be an array")) };
    let mut parsed = Vec::new();
    for role in roles {
        let (name, role_db) = match role {
            Bson::String(name) => (name.clone(), db.to_string()),
            Bson::Document(d) => match (d.get_str("role"), d.get_str("db")) {
                (Ok(name), Ok(role_db)) => (name.to_string(), role_db.to_string()),
                _ => return Err(MongoError::new(MongoError::BAD_VALUE, "a role document needs role and db")),
            },
            _ => return Err(MongoError::new(MongoError::BAD_VALUE, "a role must be a string or a document")),
        };
        if !BUILTIN_ROLES.contains(&name.as_str()) {
            return Err(MongoError::new(MongoError::ROLE_NOT_FOUND, format!("Could not find role: {name}@{role_db}")));
        }
        parsed.push((name, role_db));
    }
    Ok(Some(parsed))
}

fn create_user(state: &mut State, db: &str, command: &Document) -> Result<Document, MongoError> {
    let key = user_key(db, command, "createUser")?;
    let password = command.get_str("pwd").map_err(|_| {
        MongoError::new(
            MongoError::BAD_VALUE,
            "Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db",
        )
    })?;
    let roles = parse_roles(db, command)?
        .ok_or_else(|| MongoError::new(MongoError::BAD_VALUE, "\"createUser\" command requires a \"roles\" array"))?;
    if state.users.contains_key(&key) {
        return Err(MongoError::new(MongoError::USER_ALREADY_EXISTS, format!("User \"{}@{}\" already exists", key.1, key.0)));
    }
    let custom_data = command.get_document("customData").ok().cloned();
    state.users.insert(key, User { id: ObjectId::new(), password: password.to_string(), roles, custom_data });
    Ok(doc! { "ok": 1.0 })
}

fn update_user(state: &mut State, db: &str, command: &Document) -> Result<Document, MongoError> {
    let key = user_key(db, command, "updateUser")?;
    let roles = parse_roles(db, command)?;
    let password = command.get_str("pwd").ok();
    let custom_data = command.get_document("customData").ok();
    if roles.is_none() && password.is_none() && custom_data.is_none() {
        return Err(MongoError::new(MongoError::BAD_VALUE, "Must specify at least one field to update in updateUser"));
    }
    let user = state.users.get_mut(&key).ok_or_else(|| not_found(&key.0, &key.1))?;
    if let Some(password) = password {
        user.password = password.to_string();
    }
    if let Some(roles) = roles {
        user.roles = roles;
    }
    if let Some(custom_data) = custom_data {
        user.custom_data = Some(custom_data.clone());
    }
    Ok(doc! { "ok": 1.0 })
}

fn drop_user(state: &mut State, db: &str, command: &Document) -> Result<Document, MongoError> {
    let key = user_key(db, command, "dropUser")?;
    state.users.remove(&key).ok_or_else(|| not_found(&key.0, &key.1))?;
    Ok(doc! { "ok": 1.0 })
}

/// `usersInfo`: one user by name (`"name"` or `{user, db}`), or all users of the
/// database (`1`).
fn users_info(state: &State, db: &str, command: &Document) -> Document {
    let wanted: Option<(String, String)> = match command.get("usersInfo") {
        Some(Bson::String(user)) => Some((db.to_string(), user.clone())),
        Some(Bson::Document(d)) => Some((d.get_str("db").unwrap_or(db).to_string(), d.get_str("user").unwrap_or_default().to_string())),
        _ => None,
    };
    let show_custom_data = command.get_bool("showCustomData").unwrap_or(true);
    let users: Vec<Bson> = state
        .users
        .iter()
        .filter(|(key, _)| match &wanted {
            Some(wanted) => *key == wanted,
            None => key.0 == db,
        })
        .map(|((user_db, name), user)| {
            let roles: Vec<Bson> = user.roles.iter().map(|(role, role_db)| Bson::Document(doc! { "role": role, "db": role_db })).collect();
            let mut reply = doc! {
                "_id": format!("{user_db}.{name}"),
                "userId": user.id,
                "user": name,
                "db": user_db,
                "roles": roles,
            };
            if show_custom_data && let Some(custom_data) = &user.custom_data {
                reply.insert("customData", custom_data.clone());
            }
            reply.insert("mechanisms", vec!["SCRAM-SHA-1", "SCRAM-SHA-256"]);
            Bson::Document(reply)
        })
        .collect();
    doc! { "users": users, "ok": 1.0 }
}

/// `dbStats` with `scale: 1`: counts as integers and sizes as doubles, as servers
/// report them; each collection's storage is allocated in 4 KiB pages and every
/// collection has an `_id` index of one page.
/// `count` with a query of equalities and the operators `$eq`, `$ne`, `$exists`;
/// an unknown operator matches nothing, so a test never passes by accident.
fn count(state: &State, db: &str, command: &Document) -> Document {
    let collection = command.get_str("count").unwrap_or_default();
    let query = command.get_document("query").cloned().unwrap_or_default();
    let documents = state.databases.get(db).and_then(|c| c.get(collection));
    let n = documents.map_or(0, |docs| docs.iter().filter(|d| matches(d, &query)).count());
    doc! { "n": n as i64, "ok": 1.0 }
}

fn matches(document: &Document, query: &Document) -> bool {
    query.iter().all(|(field, condition)| {
        let value = document.get(field);
        match condition {
            Bson::Document(ops) if ops.keys().all(|k| k.starts_with('$')) => ops.iter().all(|(op, arg)| match op.as_str() {
                "$eq" => value == Some(arg),
                "$ne" => value != Some(arg),
                "$exists" => value.is_some() == (arg == &Bson::Boolean(true)),
                _ => false,
            }),
            other => value == Some(other),
        }
    })
}

fn db_stats(state: &State, db: &str) -> Document {
    let collections = state.databases.get(db);
    let collection_count = collections.map_or(0, BTreeMap::len) as i64;
    let objects = collections.map_or(0, |c| c.values().map(Vec::len).sum::<usize>()) as i64;
    let collection_sizes: Vec<usize> = collections.map_or_else(Vec::new, |c| {
        c.values().map(|docs| docs.iter().map(|d| mongodb::bson::to_vec(d).map_or(0, |b| b.len())).sum()).collect()
    });
    let data_size: usize = collection_sizes.iter().sum();
    // Every collection is stored in a file of its own.
    let storage_size: usize = collection_sizes.iter().map(|size| size.div_ceil(4096) * 4096).sum();
    let index_size = collection_count as usize * 4096;
    doc! {
        "db": db,
        "collections": collection_count,
        "views": 0_i64,
        "objects": objects,
        "avgObjSize": if objects > 0 { data_size as f64 / objects as f64 } else { 0.0 },
        "dataSize": data_size as f64,
        "storageSize": storage_size as f64,
        "indexes": collection_count,
        "indexSize": index_size as f64,
        "totalSize": (storage_size + index_size) as f64,
        "scaleFactor": 1_i64,
        "ok": 1.0,
    }
}
