//! The SQLite store: one file in the data directory, WAL mode so the CLI and
//! the running server use it at the same time.

use super::{validate_extension, BindingChange, Store, StoreError, StoreFuture, StoredBinding, User};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tsunagu_sip::digest::StoredCredentials;

pub struct SqliteStore {
    pub(super) pool: SqlitePool,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl SqliteStore {
    /// Open (creating if needed) `DIR/tsunagu.db` and run migrations. The
    /// realm is recorded on first open and kept: stored HA1s depend on it.
    pub async fn open(data_dir: &Path, realm: &str) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Invalid(format!("data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join("tsunagu.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('realm', ?)").bind(realm).execute(&pool).await?;
        Ok(Self { pool })
    }
}

/// Rows per multi-row upsert: 15 parameters each, well under SQLite's
/// 32,766-parameter limit, and one statement instead of hundreds.
const UPSERT_CHUNK: usize = 500;

/// Insert or update bindings with one statement per chunk. A binding whose
/// user was removed meanwhile is skipped (the foreign key would refuse the
/// whole statement).
async fn upsert_bindings(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, mut rows: Vec<StoredBinding>) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // The latest change per device wins; one row per key in a statement.
    let mut seen = std::collections::HashSet::new();
    rows.reverse();
    rows.retain(|b| seen.insert((b.extension.clone(), b.device_key.clone())));
    rows.reverse();
    match upsert_rows(tx, &rows).await {
        Ok(()) => Ok(()),
        Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
            // Some user went away: row by row, skipping theirs.
            for b in &rows {
                match upsert_rows(tx, std::slice::from_ref(b)).await {
                    Ok(()) => {}
                    Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// One INSERT .. ON CONFLICT DO UPDATE statement for all `rows`.
async fn upsert_rows(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, rows: &[StoredBinding]) -> Result<(), sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO bindings (extension, device_key, contact, expires_at, transport, source, instance, reg_id,
           pn_provider, pn_prid, pn_param, call_id, cseq, user_agent, updated_at) ",
    );
    qb.push_values(rows.iter(), |mut r, b| {
        r.push_bind(&b.extension)
            .push_bind(&b.device_key)
            .push_bind(&b.contact)
            .push_bind(b.expires_at)
            .push_bind(&b.transport)
            .push_bind(&b.source)
            .push_bind(&b.instance)
            .push_bind(b.reg_id)
            .push_bind(&b.pn_provider)
            .push_bind(&b.pn_prid)
            .push_bind(&b.pn_param)
            .push_bind(&b.call_id)
            .push_bind(b.cseq)
            .push_bind(&b.user_agent)
            .push_bind(b.updated_at);
    });
    qb.push(
        " ON CONFLICT (extension, device_key) DO UPDATE SET contact = excluded.contact,
           expires_at = excluded.expires_at, transport = excluded.transport, source = excluded.source,
           instance = excluded.instance, reg_id = excluded.reg_id, pn_provider = excluded.pn_provider,
           pn_prid = excluded.pn_prid, pn_param = excluded.pn_param, call_id = excluded.call_id,
           cseq = excluded.cseq, user_agent = excluded.user_agent, updated_at = excluded.updated_at",
    );
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        extension: row.try_get("extension")?,
        name: row.try_get("name")?,
        credentials: StoredCredentials { ha1_md5: row.try_get("ha1_md5")?, ha1_sha256: row.try_get("ha1_sha256")? },
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store for SqliteStore {
    fn realm(&self) -> StoreFuture<'_, String> {
        Box::pin(async move {
            let row = sqlx::query("SELECT value FROM meta WHERE key = 'realm'").fetch_one(&self.pool).await?;
            Ok(row.try_get("value")?)
        })
    }

    fn add_user(&self, user: User) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.add_users(vec![user]).await.map(|_| ()) })
    }

    fn add_users(&self, users: Vec<User>) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            for u in &users {
                validate_extension(&u.extension)?;
            }
            let mut tx = self.pool.begin().await?;
            let created = now();
            for u in &users {
                let r = sqlx::query("INSERT INTO users (extension, name, ha1_md5, ha1_sha256, created_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&u.extension)
                    .bind(&u.name)
                    .bind(&u.credentials.ha1_md5)
                    .bind(&u.credentials.ha1_sha256)
                    .bind(created)
                    .execute(&mut *tx)
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate(u.extension.clone())),
                    Err(e) => return Err(e.into()),
                }
            }
            tx.commit().await?;
            Ok(users.len())
        })
    }

    fn remove_user<'a>(&'a self, extension: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let r = sqlx::query("DELETE FROM users WHERE extension = ?").bind(extension).execute(&self.pool).await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("extension {extension}")));
            }
            Ok(())
        })
    }

    fn get_user<'a>(&'a self, extension: &'a str) -> StoreFuture<'a, Option<User>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT extension, name, ha1_md5, ha1_sha256 FROM users WHERE extension = ?")
                .bind(extension)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| user_from_row(&r)).transpose()?)
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT extension, name, ha1_md5, ha1_sha256 FROM users ORDER BY extension")
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
        })
    }

    fn users_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let row = sqlx::query("SELECT CAST(value AS INTEGER) AS v FROM meta WHERE key = 'users_version'").fetch_one(&self.pool).await?;
            Ok(row.try_get("v")?)
        })
    }

    fn apply_binding_changes(&self, changes: Vec<BindingChange>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let mut pending: Vec<StoredBinding> = Vec::new();
            for c in changes {
                match c {
                    BindingChange::Upsert(b) => {
                        pending.push(b);
                        if pending.len() >= UPSERT_CHUNK {
                            upsert_bindings(&mut tx, std::mem::take(&mut pending)).await?;
                        }
                    }
                    BindingChange::ClearAll => {
                        pending.clear();
                        sqlx::query("DELETE FROM bindings").execute(&mut *tx).await?;
                    }
                    BindingChange::Remove { extension, device_key } => {
                        upsert_bindings(&mut tx, std::mem::take(&mut pending)).await?;
                        sqlx::query("DELETE FROM bindings WHERE extension = ? AND device_key = ?")
                            .bind(extension)
                            .bind(device_key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            upsert_bindings(&mut tx, pending).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn list_bindings(&self) -> StoreFuture<'_, Vec<StoredBinding>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM bindings ORDER BY extension, device_key").fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(StoredBinding {
                    extension: r.try_get("extension")?,
                    device_key: r.try_get("device_key")?,
                    contact: r.try_get("contact")?,
                    expires_at: r.try_get("expires_at")?,
                    transport: r.try_get("transport")?,
                    source: r.try_get("source")?,
                    instance: r.try_get("instance")?,
                    reg_id: r.try_get("reg_id")?,
                    pn_provider: r.try_get("pn_provider")?,
                    pn_prid: r.try_get("pn_prid")?,
                    pn_param: r.try_get("pn_param")?,
                    call_id: r.try_get("call_id")?,
                    cseq: r.try_get("cseq")?,
                    user_agent: r.try_get("user_agent")?,
                    updated_at: r.try_get("updated_at")?,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(ext: &str) -> User {
        User { extension: ext.into(), name: format!("User {ext}"), credentials: StoredCredentials::from_password(ext, "r", "pw") }
    }

    #[tokio::test]
    async fn import_is_all_or_nothing_and_version_rises() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), "r").await.unwrap();
        let v0 = s.users_version().await.unwrap();
        s.add_user(user("1001")).await.unwrap();
        assert!(s.users_version().await.unwrap() > v0);
        let err = s.add_users(vec![user("1002"), user("1001")]).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(e) if e == "1001"));
        assert_eq!(s.list_users().await.unwrap().len(), 1, "1002 must not be half-written");
        assert!(matches!(s.add_user(user("12a")).await, Err(StoreError::Invalid(_))));
    }

    fn binding(ext: &str, key: &str, contact: &str) -> StoredBinding {
        StoredBinding {
            extension: ext.into(),
            device_key: key.into(),
            contact: contact.into(),
            expires_at: 2_000_000_000,
            transport: "udp".into(),
            source: "127.0.0.1:5060".into(),
            instance: None,
            reg_id: None,
            pn_provider: None,
            pn_prid: None,
            pn_param: None,
            call_id: "c".into(),
            cseq: 1,
            user_agent: None,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn binding_batches_upsert_remove_and_skip_removed_users() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), "r").await.unwrap();
        s.add_users(vec![user("1001"), user("1002")]).await.unwrap();
        let mut changes: Vec<BindingChange> = (0..1200).map(|i| BindingChange::Upsert(binding("1001", &format!("k{i}"), "sip:a"))).collect();
        changes.push(BindingChange::Upsert(binding("1001", "k0", "sip:latest")));
        changes.push(BindingChange::Remove { extension: "1001".into(), device_key: "k1".into() });
        // A user that does not exist: skipped, the rest still written.
        changes.push(BindingChange::Upsert(binding("1999", "k", "sip:ghost")));
        changes.push(BindingChange::Upsert(binding("1002", "k", "sip:b")));
        s.apply_binding_changes(changes).await.unwrap();
        let all = s.list_bindings().await.unwrap();
        assert_eq!(all.len(), 1199 + 1);
        assert!(all.iter().any(|b| b.device_key == "k0" && b.contact == "sip:latest"));
        assert!(!all.iter().any(|b| b.device_key == "k1"));
        assert!(!all.iter().any(|b| b.extension == "1999"));
        s.apply_binding_changes(vec![BindingChange::ClearAll, BindingChange::Upsert(binding("1002", "z", "sip:z"))]).await.unwrap();
        assert_eq!(s.list_bindings().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn realm_is_fixed_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path(), "first").await.unwrap());
        let s = SqliteStore::open(dir.path(), "second").await.unwrap();
        assert_eq!(s.realm().await.unwrap(), "first");
    }
}
