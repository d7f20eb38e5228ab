//! Admin accounts and their secrets: Argon2id password hashes, TOTP
//! (RFC 6238) secrets with replay protection, one-use recovery codes, the
//! lockout counter, and sign-in sessions (only a hash of the token is
//! stored). The HTTP handlers live in `session` and `admins`.

use super::rights::{Principal, Right, Role};
use super::ApiError;
use crate::store::{unix_ms, StoreError};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqlitePool};
use totp_rs::{Algorithm, Secret, TOTP};

/// Consecutive failed sign-ins (password or code) that lock an account.
pub const LOCK_AFTER_FAILURES: i64 = 5;
/// How long a locked account stays locked.
pub const LOCK_SECS: i64 = 15 * 60;
pub const MIN_PASSWORD_CHARS: usize = 10;

pub fn unix_secs() -> i64 {
    unix_ms() / 1000
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Random text from an alphabet without look-alikes (no 0/O, 1/l/I), for
/// one-time passwords, recovery codes and tokens read by people.
pub fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), which OWASP
/// recommends; slow on purpose, so run it off the async threads.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(format!("password hashing: {e}")))?
    .map_err(|e| ApiError::internal(format!("password hashing: {e}")))
}

/// Check a password against a stored hash. An unknown admin is checked
/// against a fixed hash, so the answer takes as long either way and does
/// not tell which names exist.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::encode_b64(b"tsunagu-no-such-admin").expect("a fixed 21-byte salt encodes");
                    Argon2::default().hash_password(b"-", &salt).map(|h| h.to_string()).unwrap_or_default()
                })
                .clone()
        });
        let ok = PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        known && ok
    })
    .await
    .unwrap_or(false)
}

pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!("the new password must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.chars().count() > 256 {
        return Err(ApiError::invalid("the new password is longer than 256 characters"));
    }
    Ok(())
}

/// A fresh TOTP secret (160 bits, as RFC 4226 recommends), base32.
pub fn new_totp_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret_b32: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string()).to_bytes().ok()?;
    // 6 digits, 30 s steps, one step of clock skew either way: what every
    // authenticator app does.
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).ok()
}

/// The code an authenticator app shows at `unix` seconds (tests and the
/// benchmark sign in with it).
pub fn totp_code(secret_b32: &str, unix: u64) -> Option<String> {
    totp(secret_b32).map(|t| t.generate(unix))
}

/// The time step `code` is good for at `unix` (±1 step), if any.
pub fn totp_step(secret_b32: &str, code: &str, unix: u64) -> Option<i64> {
    let t = totp(secret_b32)?;
    let code = code.trim();
    let step = unix / 30;
    [step.saturating_sub(1), step, step + 1].into_iter().find(|s| t.generate(s * 30) == code).map(|s| s as i64)
}

/// The `otpauth://` URL an authenticator app scans from a QR code.
pub fn otpauth_url(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!("otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30", enc(issuer), enc(account), enc(issuer))
}

/// Ten recovery codes, as shown once, and the hashes that are stored.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..10).map(|_| format!("{}-{}", random_text(5), random_text(5))).collect();
    let hashes = codes.iter().map(|c| sha256_hex(c)).collect();
    (codes, hashes)
}

/// An admin account as stored.
#[derive(Debug, Clone)]
pub struct AdminRow {
    pub name: String,
    pub role: Role,
    pub rights: Vec<Right>,
    pub password_hash: String,
    pub must_change_password: bool,
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    pub totp_last_step: i64,
    pub recovery_codes: Vec<String>,
    pub failed_signins: i64,
    pub locked_until: i64,
    pub departments: Vec<i64>,
    pub dids: Vec<String>,
}

impl AdminRow {
    pub fn principal(&self) -> Principal {
        Principal { name: self.name.clone(), role: self.role, rights: self.rights.clone(), departments: self.departments.clone(), dids: self.dids.clone() }
    }
}

pub fn parse_rights(s: &str) -> Vec<Right> {
    s.split(',').filter_map(|r| Right::parse(r.trim())).collect()
}

pub fn rights_text(rights: &[Right]) -> String {
    rights.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

pub async fn get_admin(pool: &SqlitePool, name: &str) -> Result<Option<AdminRow>, StoreError> {
    let Some(r) = sqlx::query("SELECT * FROM admins WHERE name = ?").bind(name).fetch_optional(pool).await? else { return Ok(None) };
    let departments = sqlx::query("SELECT department FROM admin_departments WHERE admin = ? ORDER BY department")
        .bind(name)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("department"))
        .collect::<Result<_, _>>()?;
    let dids = sqlx::query("SELECT did FROM admin_dids WHERE admin = ? ORDER BY did")
        .bind(name)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("did"))
        .collect::<Result<_, _>>()?;
    let role: String = r.try_get("role")?;
    Ok(Some(AdminRow {
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Invalid(format!("admin {name} has an unknown role {role:?}")))?,
        rights: parse_rights(&r.try_get::<String, _>("rights")?),
        password_hash: r.try_get("password_hash")?,
        must_change_password: r.try_get::<i64, _>("must_change_password")? != 0,
        totp_secret: r.try_get("totp_secret")?,
        totp_pending: r.try_get("totp_pending")?,
        totp_last_step: r.try_get("totp_last_step")?,
        recovery_codes: r.try_get::<String, _>("recovery_codes")?.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
        failed_signins: r.try_get("failed_signins")?,
        locked_until: r.try_get("locked_until")?,
        departments,
        dids,
    }))
}

/// Validate an admin's name: what people type at sign-in.
pub fn check_admin_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("admin name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'")))
    }
}

/// What an admin is given when created or changed.
#[derive(Debug, Clone)]
pub struct AdminSpec {
    pub name: String,
    pub role: Role,
    pub rights: Vec<Right>,
    pub departments: Vec<i64>,
    pub dids: Vec<String>,
}

/// Create an admin with a one-time password (changed at first sign-in),
/// which is returned: the only time it is seen.
pub async fn create_admin(pool: &SqlitePool, spec: &AdminSpec) -> Result<String, ApiError> {
    check_admin_name(&spec.name)?;
    let password = one_time_password();
    let hash = hash_password(password.clone()).await?;
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let r = sqlx::query("INSERT INTO admins (name, role, rights, password_hash, must_change_password, created_at) VALUES (?, ?, ?, ?, 1, ?)")
        .bind(&spec.name)
        .bind(spec.role.as_str())
        .bind(rights_text(&spec.rights))
        .bind(&hash)
        .bind(unix_secs())
        .execute(&mut *tx)
        .await;
    match r {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            return Err(ApiError::duplicate(format!("admin {} already exists", spec.name)));
        }
        r => {
            r.map_err(StoreError::from)?;
        }
    }
    write_grants(&mut tx, spec).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(password)
}

/// Replace an admin's role, rights and grants.
pub async fn update_admin(pool: &SqlitePool, spec: &AdminSpec) -> Result<(), ApiError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let r = sqlx::query("UPDATE admins SET role = ?, rights = ? WHERE name = ?")
        .bind(spec.role.as_str())
        .bind(rights_text(&spec.rights))
        .bind(&spec.name)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no such admin {}", spec.name)));
    }
    sqlx::query("DELETE FROM admin_departments WHERE admin = ?").bind(&spec.name).execute(&mut *tx).await.map_err(StoreError::from)?;
    sqlx::query("DELETE FROM admin_dids WHERE admin = ?").bind(&spec.name).execute(&mut *tx).await.map_err(StoreError::from)?;
    write_grants(&mut tx, spec).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

async fn write_grants(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, spec: &AdminSpec) -> Result<(), ApiError> {
    for d in &spec.departments {
        let r = sqlx::query("INSERT OR IGNORE INTO admin_departments (admin, department) VALUES (?, ?)").bind(&spec.name).bind(d).execute(&mut **tx).await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => return Err(ApiError::invalid(format!("no such department {d}"))),
            r => {
                r.map_err(StoreError::from)?;
            }
        }
    }
    for did in &spec.dids {
        sqlx::query("INSERT OR IGNORE INTO admin_dids (admin, did) VALUES (?, ?)").bind(&spec.name).bind(did).execute(&mut **tx).await.map_err(StoreError::from)?;
    }
    Ok(())
}

/// After a credential of `name` changed (`changed` rows: 0 when there is
/// no such admin), end its sessions: they were opened with the old one.
async fn sign_out_everywhere(pool: &SqlitePool, name: &str, changed: u64) -> Result<(), ApiError> {
    if changed == 0 {
        return Err(ApiError::not_found(format!("no such admin {name}")));
    }
    sqlx::query("DELETE FROM admin_sessions WHERE admin = ?").bind(name).execute(pool).await.map_err(StoreError::from)?;
    Ok(())
}

/// A one-time password, read from the terminal and typed once.
fn one_time_password() -> String {
    format!("{}-{}-{}", random_text(4), random_text(4), random_text(4))
}

/// Give an admin a new one-time password (the CLI's way back in).
pub async fn reset_password(pool: &SqlitePool, name: &str) -> Result<String, ApiError> {
    let password = one_time_password();
    let hash = hash_password(password.clone()).await?;
    let r = sqlx::query("UPDATE admins SET password_hash = ?, must_change_password = 1, failed_signins = 0, locked_until = 0 WHERE name = ?")
        .bind(hash)
        .bind(name)
        .execute(pool)
        .await
        .map_err(StoreError::from)?;
    sign_out_everywhere(pool, name, r.rows_affected()).await?;
    Ok(password)
}

/// Forget an admin's TOTP (a lost phone): it enrols again at the next
/// sign-in, and its sessions end.
pub async fn reset_mfa(pool: &SqlitePool, name: &str) -> Result<(), ApiError> {
    let r = sqlx::query("UPDATE admins SET totp_secret = NULL, totp_pending = NULL, recovery_codes = '' WHERE name = ?")
        .bind(name)
        .execute(pool)
        .await
        .map_err(StoreError::from)?;
    sign_out_everywhere(pool, name, r.rows_affected()).await?;
    Ok(())
}

/// Every admin, by name.
pub async fn list_admins(pool: &SqlitePool) -> Result<Vec<AdminRow>, StoreError> {
    let names = sqlx::query("SELECT name FROM admins ORDER BY name").fetch_all(pool).await?;
    let mut out = Vec::new();
    for r in names {
        if let Some(a) = get_admin(pool, &r.try_get::<String, _>("name")?).await? {
            out.push(a);
        }
    }
    Ok(out)
}

/// Count a failed sign-in; lock the account at the limit. Answers the
/// seconds it is now locked for (0: not locked).
pub async fn record_failure(pool: &SqlitePool, name: &str) -> Result<i64, StoreError> {
    let now = unix_secs();
    let row = sqlx::query(
        "UPDATE admins SET failed_signins = failed_signins + 1,
           locked_until = CASE WHEN failed_signins + 1 >= ? THEN ? ELSE locked_until END
         WHERE name = ? RETURNING locked_until",
    )
    .bind(LOCK_AFTER_FAILURES)
    .bind(now + LOCK_SECS)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    let until: i64 = row.map(|r| r.try_get("locked_until")).transpose()?.unwrap_or(0);
    Ok((until - now).max(0))
}

pub async fn clear_failures(pool: &SqlitePool, name: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE admins SET failed_signins = 0, locked_until = 0 WHERE name = ?").bind(name).execute(pool).await?;
    Ok(())
}

/// Where a session stands on the way to being signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Password right; the TOTP code comes next.
    Mfa,
    /// MFA is mandatory for the role and not set up: enrol next.
    Enrol,
    /// Signed in with a one-time password: choose a new one next.
    Password,
    Ok,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Mfa => "mfa",
            SessionState::Enrol => "enrol",
            SessionState::Password => "password",
            SessionState::Ok => "ok",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Mfa, Self::Enrol, Self::Password, Self::Ok].into_iter().find(|x| x.as_str() == s)
    }

    /// The next step for `admin`, `code_done` once a TOTP or recovery code
    /// was accepted in this session.
    pub fn next(admin: &AdminRow, mfa_required: bool, code_done: bool) -> Self {
        if admin.totp_secret.is_some() && !code_done {
            SessionState::Mfa
        } else if admin.totp_secret.is_none() && mfa_required {
            SessionState::Enrol
        } else if admin.must_change_password {
            SessionState::Password
        } else {
            SessionState::Ok
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_hash: String,
    pub admin: String,
    pub csrf: String,
    pub state: SessionState,
    pub created_at: i64,
    pub last_seen: i64,
}

/// Start a session; answers the cookie's token (never stored) and the row.
pub async fn create_session(pool: &SqlitePool, admin: &str, state: SessionState, source: &str) -> Result<(String, SessionRow), StoreError> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let now = unix_secs();
    let row = SessionRow { token_hash: sha256_hex(&token), admin: admin.to_string(), csrf, state, created_at: now, last_seen: now };
    sqlx::query("INSERT INTO admin_sessions (token_hash, admin, csrf, state, created_at, last_seen, source) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(&row.token_hash)
        .bind(&row.admin)
        .bind(&row.csrf)
        .bind(state.as_str())
        .bind(now)
        .bind(now)
        .bind(source)
        .execute(pool)
        .await?;
    Ok((token, row))
}

pub async fn get_session(pool: &SqlitePool, token: &str) -> Result<Option<SessionRow>, StoreError> {
    let Some(r) = sqlx::query("SELECT * FROM admin_sessions WHERE token_hash = ?").bind(sha256_hex(token)).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let state: String = r.try_get("state")?;
    Ok(Some(SessionRow {
        token_hash: r.try_get("token_hash")?,
        admin: r.try_get("admin")?,
        csrf: r.try_get("csrf")?,
        state: SessionState::parse(&state).unwrap_or(SessionState::Mfa),
        created_at: r.try_get("created_at")?,
        last_seen: r.try_get("last_seen")?,
    }))
}

pub async fn set_session_state(pool: &SqlitePool, token_hash: &str, state: SessionState) -> Result<(), StoreError> {
    sqlx::query("UPDATE admin_sessions SET state = ?, last_seen = ? WHERE token_hash = ?").bind(state.as_str()).bind(unix_secs()).bind(token_hash).execute(pool).await?;
    Ok(())
}

pub async fn touch_session(pool: &SqlitePool, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE admin_sessions SET last_seen = ? WHERE token_hash = ?").bind(unix_secs()).bind(token_hash).execute(pool).await?;
    Ok(())
}

pub async fn delete_session(pool: &SqlitePool, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_hash = ?").bind(token_hash).execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc6238_test_vector() {
        // RFC 6238 appendix B: SHA-1 secret "12345678901234567890",
        // T = 59 s gives 94287082 (8 digits); the 6-digit code is its tail.
        let secret = Secret::Raw(b"12345678901234567890".to_vec()).to_encoded().to_string();
        assert_eq!(totp_code(&secret, 59).as_deref(), Some("287082"));
        assert_eq!(totp_step(&secret, "287082", 59), Some(1));
        assert_eq!(totp_step(&secret, "287082", 59 + 30), Some(1), "one step of skew is allowed");
        assert_eq!(totp_step(&secret, "287082", 59 + 90), None, "three steps later it is not");
        assert_eq!(totp_step(&secret, "000000", 59), None);
    }

    #[test]
    fn otpauth_url_escapes_names() {
        let u = otpauth_url("Tsunagu 市役所", "admin@city", "ABC");
        assert!(u.starts_with("otpauth://totp/Tsunagu%20%E5%B8%82"), "{u}");
        assert!(u.contains("secret=ABC&issuer=Tsunagu%20"), "{u}");
    }

    #[test]
    fn recovery_codes_are_distinct_and_hashed() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes[3], sha256_hex(&codes[3]));
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
    }

    #[tokio::test]
    async fn passwords_verify_only_when_right() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(verify_password(Some(h.clone()), "correct horse battery".into()).await);
        assert!(!verify_password(Some(h), "wrong".into()).await);
        assert!(!verify_password(None, "anything".into()).await);
    }
}
