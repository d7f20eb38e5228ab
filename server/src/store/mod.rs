//! Persistent state behind one interface: SQLite in the data directory by
//! default; a PostgreSQL backend implements the same trait when several
//! nodes share state.

mod announcements;
mod ivr;
mod pbx;
mod recording;
mod schedules;
mod sqlite;

pub use announcements::*;
pub use pbx::*;
pub use recording::*;

pub use sqlite::SqliteStore;

use std::future::Future;
use std::pin::Pin;
use tsunagu_sip::digest::StoredCredentials;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("extension {0} already exists")]
    Duplicate(String),
    /// What was not found, named ("extension 1001", "ring group 3000").
    #[error("no such {0}")]
    NotFound(String),
    #[error("invalid data: {0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An extension and its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub extension: String,
    pub name: String,
    pub credentials: StoredCredentials,
}

/// A registered device of an extension, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    pub extension: String,
    pub device_key: String,
    pub contact: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// udp, tcp or tls.
    pub transport: String,
    /// Source address the REGISTER came from (ip:port).
    pub source: String,
    pub instance: Option<String>,
    pub reg_id: Option<i64>,
    pub pn_provider: Option<String>,
    pub pn_prid: Option<String>,
    pub pn_param: Option<String>,
    pub call_id: String,
    pub cseq: i64,
    pub user_agent: Option<String>,
    pub updated_at: i64,
}

/// A change to the location table, applied in batches.
#[derive(Debug, Clone)]
pub enum BindingChange {
    Upsert(StoredBinding),
    Remove { extension: String, device_key: String },
    /// Forget every binding (followed by upserts: a full snapshot).
    ClearAll,
}

pub trait Store: Send + Sync + 'static {
    /// The digest realm fixed when the store was created.
    fn realm(&self) -> StoreFuture<'_, String>;
    fn add_user(&self, user: User) -> StoreFuture<'_, ()>;
    /// Add all or none; fails on the first duplicate or invalid row.
    fn add_users(&self, users: Vec<User>) -> StoreFuture<'_, usize>;
    fn remove_user<'a>(&'a self, extension: &'a str) -> StoreFuture<'a, ()>;
    fn get_user<'a>(&'a self, extension: &'a str) -> StoreFuture<'a, Option<User>>;
    fn list_users(&self) -> StoreFuture<'_, Vec<User>>;
    /// Rises whenever any user is added, changed or removed, by any process.
    fn users_version(&self) -> StoreFuture<'_, i64>;
    fn apply_binding_changes(&self, changes: Vec<BindingChange>) -> StoreFuture<'_, ()>;
    fn list_bindings(&self) -> StoreFuture<'_, Vec<StoredBinding>>;
}

impl StoreError {
    /// The message alone, for a caller that adds its own context (a CSV
    /// row, a field name): "invalid data: " and the like dropped.
    pub fn detail(&self) -> String {
        match self {
            StoreError::Invalid(m) => m.clone(),
            e => e.to_string(),
        }
    }
}

/// Check a SIP password as admins and CSV files give it: 8 to 128
/// characters (desk phones hold no more), no control characters.
pub fn validate_sip_password(p: &str) -> Result<(), StoreError> {
    if !(8..=128).contains(&p.chars().count()) {
        return Err(StoreError::Invalid("the SIP password must have 8 to 128 characters".into()));
    }
    if p.chars().any(char::is_control) {
        return Err(StoreError::Invalid("the SIP password must not contain control characters".into()));
    }
    Ok(())
}

/// Check an extension number: digits only, 2 to 16 of them (what desk
/// phones can dial and what the numbering plan uses).
pub fn validate_extension(ext: &str) -> Result<(), StoreError> {
    if (2..=16).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("extension {ext:?} must be 2 to 16 digits")))
    }
}
