//! Call routing configuration (user call settings, ring groups, trunks,
//! DIDs, settings) and call records, in the SQLite store. Everything here
//! is read at the moment a call needs it, so what the CLI (or later the web
//! app) saves takes effect on the next call without a reload.

use super::{SqliteStore, StoreError};
use sqlx::Row;

/// Where a call goes: the syntax admins type and CSV files carry is
/// `user:1001`, `group:3000`, `number:0312345678`, `schedule:main`,
/// `announcement:closed`, `ivr:main`, or a bare number (resolved at call time against extensions, then groups).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dest {
    User(String),
    Group(String),
    /// An outside number, sent to the carrier as dialled (national format).
    Number(String),
    /// A bare number, resolved when the call happens.
    Any(String),
    /// A business-hour schedule, evaluated when the call arrives.
    Schedule(String),
    /// A recorded announcement the PBX plays itself, then hangs up.
    Announcement(String),
    /// A voice menu (IVR) the PBX answers itself.
    Ivr(String),
}

impl Dest {
    pub fn parse(s: &str) -> Result<Dest, StoreError> {
        let s = s.trim();
        let (kind, num) = match s.split_once(':') {
            Some((k, n)) => (Some(k), n),
            None => (None, s),
        };
        match kind {
            Some("schedule") => {
                crate::schedule::check_name(num)?;
                return Ok(Dest::Schedule(num.to_string()));
            }
            Some("announcement") => {
                check_media_name("announcement", num)?;
                return Ok(Dest::Announcement(num.to_string()));
            }
            Some("ivr") => {
                check_media_name("IVR menu", num)?;
                return Ok(Dest::Ivr(num.to_string()));
            }
            _ => {}
        }
        let digits_ok = !num.is_empty() && num.len() <= 24 && num.bytes().all(|b| b.is_ascii_digit() || b == b'+' || b == b'*' || b == b'#');
        if !digits_ok {
            return Err(StoreError::Invalid(format!("destination {s:?}: expected user:EXT, group:NUMBER, number:DIGITS or a number")));
        }
        Ok(match kind {
            Some("user") | Some("ext") => Dest::User(num.to_string()),
            Some("group") => Dest::Group(num.to_string()),
            Some("number") | Some("tel") => Dest::Number(num.to_string()),
            None => Dest::Any(num.to_string()),
            Some(k) => return Err(StoreError::Invalid(format!("destination {s:?}: unknown kind {k:?} (user, group, number, schedule, announcement, ivr)"))),
        })
    }

    /// Whether the PBX itself answers this destination (it cannot ring as
    /// a group member: a member is a phone that rings).
    pub fn is_pbx_app(&self) -> bool {
        matches!(self, Dest::Schedule(_) | Dest::Announcement(_) | Dest::Ivr(_))
    }
}

/// Names of announcements and IVR menus: what `schedule:` names allow.
pub fn check_media_name(what: &str, name: &str) -> Result<(), StoreError> {
    if (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("{what} name {name:?}: 1 to 32 lowercase letters, digits, '-' or '_'")))
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::User(n) => write!(f, "user:{n}"),
            Dest::Group(n) => write!(f, "group:{n}"),
            Dest::Number(n) => write!(f, "number:{n}"),
            Dest::Any(n) => write!(f, "{n}"),
            Dest::Schedule(n) => write!(f, "schedule:{n}"),
            Dest::Announcement(n) => write!(f, "announcement:{n}"),
            Dest::Ivr(n) => write!(f, "ivr:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerIdChoice {
    /// The city's main number.
    Main,
    /// The user's own DID.
    Own,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    pub extension: String,
    pub caller_id: CallerIdChoice,
    pub own_did: Option<String>,
    pub fwd_always: Option<Dest>,
    pub fwd_busy: Option<Dest>,
    pub fwd_no_answer: Option<Dest>,
    pub fwd_no_answer_secs: u32,
    pub fwd_unregistered: Option<Dest>,
}

impl UserSettings {
    pub fn default_for(ext: &str) -> Self {
        Self {
            extension: ext.to_string(),
            caller_id: CallerIdChoice::Main,
            own_did: None,
            fwd_always: None,
            fwd_busy: None,
            fwd_no_answer: None,
            fwd_no_answer_secs: 20,
            fwd_unregistered: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Simultaneous,
    Sequential,
    RoundRobin,
    LongestIdle,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "simultaneous" | "ringall" => Strategy::Simultaneous,
            "sequential" | "linear" => Strategy::Sequential,
            "round-robin" | "roundrobin" => Strategy::RoundRobin,
            "longest-idle" => Strategy::LongestIdle,
            _ => return Err(StoreError::Invalid(format!("strategy {s:?}: expected simultaneous, sequential, round-robin or longest-idle"))),
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Simultaneous => "simultaneous",
            Strategy::Sequential => "sequential",
            Strategy::RoundRobin => "round-robin",
            Strategy::LongestIdle => "longest-idle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingGroup {
    pub number: String,
    pub name: String,
    pub strategy: Strategy,
    /// Extensions or outside numbers, in order.
    pub members: Vec<Dest>,
    pub member_timeout_secs: u32,
    pub timeout_secs: u32,
    pub overflow: Option<Dest>,
    pub skip_busy: bool,
    pub rr_next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkTransport {
    Udp,
    Tcp,
    Tls,
}

impl TrunkTransport {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "udp" => TrunkTransport::Udp,
            "tcp" => TrunkTransport::Tcp,
            "tls" => TrunkTransport::Tls,
            _ => return Err(StoreError::Invalid(format!("transport {s:?}: expected udp, tcp or tls"))),
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkTransport::Udp => "udp",
            TrunkTransport::Tcp => "tcp",
            TrunkTransport::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    pub host: std::net::SocketAddr,
    pub transport: TrunkTransport,
    pub username: Option<String>,
    pub password: Option<String>,
    pub priority: i64,
    /// Register with the credentials (else the carrier authenticates us by
    /// our IP address).
    pub register: bool,
    pub state: String,
    pub state_detail: String,
    pub state_at: i64,
}

/// Settings keys and their defaults.
pub const SETTING_MAIN_NUMBER: &str = "main_number";
pub const SETTING_OUTSIDE_PREFIX: &str = "outside_prefix";
pub const SETTING_CID_MAIN_PREFIX: &str = "cid_main_prefix";
pub const SETTING_CID_OWN_PREFIX: &str = "cid_own_prefix";
/// Roles whose admins must sign in with a TOTP code (comma-separated).
pub const SETTING_MFA_REQUIRED_ROLES: &str = "mfa_required_roles";
/// "on": schedules with a disaster destination send calls there.
pub const SETTING_DISASTER_MODE: &str = "disaster_mode";
/// The announcement played to a held caller, unless the DID or ring group
/// names its own.
pub const SETTING_MUSIC_ON_HOLD: &str = "music_on_hold";
/// `2027-01-01T10:00` (JST): schedules act as if it were that time, to
/// try one out; empty (the default): the real time.
pub const SETTING_SCHEDULE_CLOCK: &str = "schedule_clock";
/// `pbx` (default): a REFER from the callee's phone is carried out by the
/// PBX, with recall; `phones`: REFER passes across and the phones do it.
pub const SETTING_TRANSFER_MODE: &str = "transfer_mode";
/// Seconds a transfer target rings before the call comes back.
pub const SETTING_TRANSFER_RECALL_SECS: &str = "transfer_recall_secs";
/// Seconds a parked call waits before the parker's phone rings again.
pub const SETTING_PARK_RECALL_SECS: &str = "park_recall_secs";
/// Keyed during a call (`##`), then a number and `#`: the PBX transfers
/// the other party there (desk phones without a transfer key, or whose
/// key the PBX should not rely on); empty turns it off.
pub const SETTING_TRANSFER_CODE: &str = "transfer_code";
/// Every setting key, in the order admin screens list them.
pub const SETTING_KEYS: [&str; 12] = [
    SETTING_MAIN_NUMBER,
    SETTING_OUTSIDE_PREFIX,
    SETTING_CID_MAIN_PREFIX,
    SETTING_CID_OWN_PREFIX,
    SETTING_MFA_REQUIRED_ROLES,
    SETTING_DISASTER_MODE,
    SETTING_MUSIC_ON_HOLD,
    SETTING_SCHEDULE_CLOCK,
    SETTING_TRANSFER_MODE,
    SETTING_TRANSFER_RECALL_SECS,
    SETTING_PARK_RECALL_SECS,
    SETTING_TRANSFER_CODE,
];

/// Check a value of the call-handling settings (transfer, park, the
/// schedules' clock); None for other keys. The API and the CLI both end
/// up here.
pub fn check_call_setting(key: &str, value: &str) -> Option<Result<(), String>> {
    Some(match key {
        SETTING_SCHEDULE_CLOCK if value.is_empty() || crate::schedule::parse_clock(value).is_some() => Ok(()),
        SETTING_SCHEDULE_CLOCK => Err(format!("{key}: a JST time like 2027-01-01T10:00, or empty for the real time")),
        SETTING_TRANSFER_MODE if matches!(value, "pbx" | "phones") => Ok(()),
        SETTING_TRANSFER_MODE => Err(format!("{key}: pbx or phones")),
        SETTING_TRANSFER_RECALL_SECS if value.parse::<u32>().is_ok_and(|n| (5..=600).contains(&n)) => Ok(()),
        SETTING_TRANSFER_RECALL_SECS => Err(format!("{key}: seconds, 5 to 600")),
        SETTING_PARK_RECALL_SECS if value.parse::<u32>().is_ok_and(|n| (5..=3600).contains(&n)) => Ok(()),
        SETTING_PARK_RECALL_SECS => Err(format!("{key}: seconds, 5 to 3600")),
        // Starting with `#` or `*`, so that ordinary digits keyed during a
        // call (a bank's menu, a conference PIN) never begin it.
        SETTING_TRANSFER_CODE if value.is_empty() || ((2..=4).contains(&value.len()) && value.starts_with(['#', '*']) && value.bytes().all(|b| b.is_ascii_digit() || b == b'#' || b == b'*')) => Ok(()),
        SETTING_TRANSFER_CODE => Err(format!("{key}: 2 to 4 keys of 0-9, * and #, starting with * or # (like ##), or empty to turn it off")),
        _ => return None,
    })
}

pub fn setting_default(key: &str) -> Option<&'static str> {
    Some(match key {
        SETTING_MAIN_NUMBER => "",
        SETTING_OUTSIDE_PREFIX => "0",
        SETTING_CID_MAIN_PREFIX => "*81",
        SETTING_CID_OWN_PREFIX => "*82",
        // A city's phone system: everyone who can change it proves who they are twice.
        SETTING_MFA_REQUIRED_ROLES => "system,org,group,auditor,supervisor,readonly",
        SETTING_DISASTER_MODE => "off",
        SETTING_MUSIC_ON_HOLD => crate::announce::HOLD_MUSIC,
        SETTING_SCHEDULE_CLOCK => "",
        SETTING_TRANSFER_MODE => "pbx",
        SETTING_TRANSFER_RECALL_SECS => "30",
        SETTING_PARK_RECALL_SECS => "120",
        SETTING_TRANSFER_CODE => "##",
        // Call recording's own (store/recording.rs).
        _ => return super::recording_setting_default(key),
    })
}

/// A public number as stored: the national form of what was given
/// (`+81312345678` becomes `0312345678`), 2 to 20 digits.
pub fn did_number(raw: &str) -> Result<String, StoreError> {
    let number = crate::routing::national(raw);
    if (2..=20).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit()) {
        Ok(number)
    } else {
        Err(StoreError::Invalid(format!("number {raw:?}: 2 to 20 digits (or +81 and the number)")))
    }
}

/// A DID's label: what admins read in lists.
pub fn validate_did_label(label: &str) -> Result<(), StoreError> {
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(StoreError::Invalid("the label has at most 100 characters, no control characters".into()));
    }
    Ok(())
}

/// Public numbers from CSV rows (as `csv::parse` gives them): a header
/// naming `number` and `dest` (or `destination`), and `label` if wanted.
/// Answers each number with its line, or every bad line with the reason.
#[allow(clippy::type_complexity)]
pub fn dids_from_rows(rows: &[(usize, Vec<String>)]) -> Result<Vec<(usize, String, Dest, String)>, Vec<(usize, String)>> {
    let Some((header_line, header)) = rows.first() else { return Err(vec![(1, "the file is empty".into())]) };
    let col = |names: &[&str]| header.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)));
    let (Some(num_i), Some(dest_i)) = (col(&["number"]), col(&["dest", "destination"])) else {
        return Err(vec![(*header_line, "the header must name the columns number,dest[,label]".into())]);
    };
    let label_i = col(&["label"]);
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, fields) in &rows[1..] {
        let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
        let mut problems = Vec::new();
        let number = did_number(get(num_i)).map_err(|e| problems.push(e.detail())).ok();
        let dest = Dest::parse(get(dest_i)).map_err(|e| problems.push(e.detail())).ok();
        let label = label_i.map(get).unwrap_or("").to_string();
        if let Err(e) = validate_did_label(&label) {
            problems.push(e.detail());
        }
        match (number, dest) {
            // Only good rows claim a number: a bad row's number is reported
            // for what is wrong with it, not as a duplicate.
            (Some(n), Some(d)) if problems.is_empty() => {
                if seen.insert(n.clone()) {
                    out.push((*line, n, d, label));
                } else {
                    errors.push((*line, format!("number {n} appears twice in the file")));
                }
            }
            _ => errors.push((*line, problems.join("; "))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Which call records to read.
#[derive(Debug, Clone, Default)]
pub struct CallQuery {
    pub user: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: Option<i64>,
    pub newest_first: bool,
}

/// A call record.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CallRecord {
    pub id: String,
    pub direction: String,
    pub caller: String,
    pub callee: String,
    pub did: Option<String>,
    pub trunk: Option<String>,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub result: String,
    pub answered_by: Option<String>,
    pub answered_device: Option<String>,
    pub caller_id_shown: Option<String>,
}

impl CallRecord {
    /// Talk time in whole seconds (0 when never answered).
    pub fn duration_secs(&self) -> i64 {
        match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) if e >= a => (e - a + 500) / 1000,
            _ => 0,
        }
    }
}

fn opt_dest(v: Option<String>) -> Option<Dest> {
    v.and_then(|s| Dest::parse(&s).ok())
}

fn bool_of(b: bool) -> i64 {
    i64::from(b)
}

impl SqliteStore {
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }

    pub async fn user_exists(&self, ext: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM users WHERE extension = ?").bind(ext).fetch_optional(&self.pool).await?.is_some())
    }

    pub async fn user_settings(&self, ext: &str) -> Result<UserSettings, StoreError> {
        let row = sqlx::query("SELECT * FROM user_settings WHERE extension = ?").bind(ext).fetch_optional(&self.pool).await?;
        let Some(r) = row else { return Ok(UserSettings::default_for(ext)) };
        Ok(UserSettings {
            extension: ext.to_string(),
            caller_id: if r.try_get::<String, _>("caller_id")? == "own" { CallerIdChoice::Own } else { CallerIdChoice::Main },
            own_did: r.try_get("own_did")?,
            fwd_always: opt_dest(r.try_get("fwd_always")?),
            fwd_busy: opt_dest(r.try_get("fwd_busy")?),
            fwd_no_answer: opt_dest(r.try_get("fwd_no_answer")?),
            fwd_no_answer_secs: r.try_get::<i64, _>("fwd_no_answer_secs")?.clamp(1, 600) as u32,
            fwd_unregistered: opt_dest(r.try_get("fwd_unregistered")?),
        })
    }

    pub async fn set_user_settings(&self, s: &UserSettings) -> Result<(), StoreError> {
        if !self.user_exists(&s.extension).await? {
            return Err(StoreError::NotFound(format!("extension {}", s.extension)));
        }
        sqlx::query(
            "INSERT INTO user_settings (extension, caller_id, own_did, fwd_always, fwd_busy, fwd_no_answer, fwd_no_answer_secs, fwd_unregistered)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(extension) DO UPDATE SET caller_id = excluded.caller_id, own_did = excluded.own_did,
               fwd_always = excluded.fwd_always, fwd_busy = excluded.fwd_busy, fwd_no_answer = excluded.fwd_no_answer,
               fwd_no_answer_secs = excluded.fwd_no_answer_secs, fwd_unregistered = excluded.fwd_unregistered",
        )
        .bind(&s.extension)
        .bind(if s.caller_id == CallerIdChoice::Own { "own" } else { "main" })
        .bind(&s.own_did)
        .bind(s.fwd_always.as_ref().map(Dest::to_string))
        .bind(s.fwd_busy.as_ref().map(Dest::to_string))
        .bind(s.fwd_no_answer.as_ref().map(Dest::to_string))
        .bind(i64::from(s.fwd_no_answer_secs))
        .bind(s.fwd_unregistered.as_ref().map(Dest::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ring_group(&self, number: &str) -> Result<Option<RingGroup>, StoreError> {
        let row = sqlx::query("SELECT * FROM ring_groups WHERE number = ?").bind(number).fetch_optional(&self.pool).await?;
        row.map(|r| group_from_row(&r)).transpose()
    }

    pub async fn list_ring_groups(&self) -> Result<Vec<RingGroup>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ring_groups ORDER BY number").fetch_all(&self.pool).await?;
        rows.iter().map(group_from_row).collect()
    }

    pub async fn put_ring_group(&self, g: &RingGroup) -> Result<(), StoreError> {
        if g.members.is_empty() {
            return Err(StoreError::Invalid("a ring group needs at least one member".into()));
        }
        if let Some(m) = g.members.iter().find(|m| m.is_pbx_app()) {
            return Err(StoreError::Invalid(format!("{m} cannot ring as a member; use it as the group's overflow or a number's destination")));
        }
        if self.user_exists(&g.number).await? {
            return Err(StoreError::Invalid(format!("{} is already an extension", g.number)));
        }
        let members: Vec<String> = g.members.iter().map(Dest::to_string).collect();
        sqlx::query(
            "INSERT INTO ring_groups (number, name, strategy, members, member_timeout, timeout, overflow, skip_busy)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(number) DO UPDATE SET name = excluded.name, strategy = excluded.strategy, members = excluded.members,
               member_timeout = excluded.member_timeout, timeout = excluded.timeout, overflow = excluded.overflow, skip_busy = excluded.skip_busy",
        )
        .bind(&g.number)
        .bind(&g.name)
        .bind(g.strategy.as_str())
        .bind(members.join(","))
        .bind(i64::from(g.member_timeout_secs))
        .bind(i64::from(g.timeout_secs))
        .bind(g.overflow.as_ref().map(Dest::to_string))
        .bind(bool_of(g.skip_busy))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_ring_group(&self, number: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM ring_groups WHERE number = ?").bind(number).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("ring group {number}")));
        }
        Ok(())
    }

    /// Take the round-robin start index and advance it, atomically.
    pub async fn next_round_robin(&self, number: &str, members: usize) -> Result<usize, StoreError> {
        let members = members.max(1) as i64;
        let row = sqlx::query("UPDATE ring_groups SET rr_next = (rr_next + 1) % ? WHERE number = ? RETURNING (rr_next + ? - 1) % ? AS start")
            .bind(members)
            .bind(number)
            .bind(members)
            .bind(members)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("start")).transpose()?.unwrap_or(0).max(0) as usize)
    }

    pub async fn list_trunks(&self) -> Result<Vec<Trunk>, StoreError> {
        let rows = sqlx::query("SELECT * FROM trunks ORDER BY priority, name").fetch_all(&self.pool).await?;
        rows.iter().map(trunk_from_row).collect()
    }

    pub async fn put_trunk(&self, t: &Trunk) -> Result<(), StoreError> {
        if t.register && (t.username.is_none() || t.password.is_none()) {
            return Err(StoreError::Invalid("a registering trunk needs --username and --password".into()));
        }
        sqlx::query(
            "INSERT INTO trunks (name, host, transport, username, password, priority, register) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET host = excluded.host, transport = excluded.transport, username = excluded.username,
               password = excluded.password, priority = excluded.priority, register = excluded.register",
        )
        .bind(&t.name)
        .bind(t.host.to_string())
        .bind(t.transport.as_str())
        .bind(&t.username)
        .bind(&t.password)
        .bind(t.priority)
        .bind(bool_of(t.register))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_trunk(&self, name: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM trunks WHERE name = ?").bind(name).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("trunk {name}")));
        }
        Ok(())
    }

    pub async fn set_trunk_state(&self, name: &str, state: &str, detail: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE trunks SET state = ?, state_detail = ?, state_at = ? WHERE name = ?")
            .bind(state)
            .bind(detail)
            .bind(unix_ms() / 1000)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn did(&self, number: &str) -> Result<Option<Dest>, StoreError> {
        let row = sqlx::query("SELECT dest FROM dids WHERE number = ?").bind(number).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<String, _>("dest")).transpose()?.and_then(|d| Dest::parse(&d).ok()))
    }

    pub async fn list_dids(&self) -> Result<Vec<(String, Dest, String)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM dids ORDER BY number").fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for r in rows {
            let dest: String = r.try_get("dest")?;
            out.push((r.try_get("number")?, Dest::parse(&dest)?, r.try_get("label")?));
        }
        Ok(out)
    }

    /// Add or replace DIDs, all or none.
    pub async fn put_dids(&self, dids: &[(String, Dest, String)]) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        for (number, dest, label) in dids {
            sqlx::query("INSERT INTO dids (number, dest, label) VALUES (?, ?, ?) ON CONFLICT(number) DO UPDATE SET dest = excluded.dest, label = excluded.label")
                .bind(number)
                .bind(dest.to_string())
                .bind(label)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(dids.len())
    }

    pub async fn remove_did(&self, number: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM dids WHERE number = ?").bind(number).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("number {number}")));
        }
        Ok(())
    }

    pub async fn setting(&self, key: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?").bind(key).fetch_optional(&self.pool).await?;
        match row {
            Some(r) => Ok(r.try_get("value")?),
            None => Ok(setting_default(key).unwrap_or("").to_string()),
        }
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        if setting_default(key).is_none() {
            return Err(StoreError::Invalid(format!("unknown setting {key:?}; known: {}", SETTING_KEYS.join(", "))));
        }
        if let Some(Err(m)) = super::check_recording_setting(key, value) {
            return Err(StoreError::Invalid(m));
        }
        if let Some(Err(m)) = check_call_setting(key, value) {
            return Err(StoreError::Invalid(m));
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Insert or update a call record (called at every state change, so a
    /// crash loses at most the change in flight).
    pub async fn put_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        self.put_calls(std::slice::from_ref(c)).await
    }

    /// Several call-record changes in one transaction (the record writer
    /// batches what arrived in the last few milliseconds).
    pub async fn put_calls(&self, calls: &[CallRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in calls {
            put_call_in(&mut tx, c).await?;
        }
        tx.commit().await?;
        Ok(())
    }

}

async fn put_call_in(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, c: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calls (id, direction, caller, callee, did, trunk, started_at, answered_at, ended_at, result, answered_by, answered_device, caller_id_shown)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET callee = excluded.callee, did = excluded.did, trunk = excluded.trunk,
               answered_at = excluded.answered_at, ended_at = excluded.ended_at, result = excluded.result,
               answered_by = excluded.answered_by, answered_device = excluded.answered_device, caller_id_shown = excluded.caller_id_shown",
        )
        .bind(&c.id)
        .bind(&c.direction)
        .bind(&c.caller)
        .bind(&c.callee)
        .bind(&c.did)
        .bind(&c.trunk)
        .bind(c.started_at)
        .bind(c.answered_at)
        .bind(c.ended_at)
        .bind(&c.result)
        .bind(&c.answered_by)
        .bind(&c.answered_device)
        .bind(&c.caller_id_shown)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

impl SqliteStore {
    /// Records, oldest first; `user` filters to calls the extension made,
    /// was called on, or answered.
    pub async fn list_calls(&self, user: Option<&str>) -> Result<Vec<CallRecord>, StoreError> {
        self.query_calls(&CallQuery { user: user.map(str::to_string), ..CallQuery::default() }).await
    }

    /// Call records by user and start time (Unix ms, `from` inclusive, `to`
    /// exclusive), oldest first or newest first, at most `limit`.
    pub async fn query_calls(&self, q: &CallQuery) -> Result<Vec<CallRecord>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM calls WHERE 1 = 1");
        if let Some(u) = q.user.as_ref().filter(|u| !u.is_empty()) {
            qb.push(" AND (caller = ").push_bind(u.clone()).push(" OR callee = ").push_bind(u.clone()).push(" OR answered_by = ").push_bind(u.clone()).push(")");
        }
        if let Some(from) = q.from {
            qb.push(" AND started_at >= ").push_bind(from);
        }
        if let Some(to) = q.to {
            qb.push(" AND started_at < ").push_bind(to);
        }
        qb.push(if q.newest_first { " ORDER BY started_at DESC, id DESC" } else { " ORDER BY started_at, id" });
        if let Some(limit) = q.limit {
            qb.push(" LIMIT ").push_bind(limit);
        }
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CallRecord {
                    id: r.try_get("id")?,
                    direction: r.try_get("direction")?,
                    caller: r.try_get("caller")?,
                    callee: r.try_get("callee")?,
                    did: r.try_get("did")?,
                    trunk: r.try_get("trunk")?,
                    started_at: r.try_get("started_at")?,
                    answered_at: r.try_get("answered_at")?,
                    ended_at: r.try_get("ended_at")?,
                    result: r.try_get("result")?,
                    answered_by: r.try_get("answered_by")?,
                    answered_device: r.try_get("answered_device")?,
                    caller_id_shown: r.try_get("caller_id_shown")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Calls left unfinished by a crash: closed as `interrupted` at start.
    pub async fn close_interrupted_calls(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE calls SET ended_at = ?, result = 'interrupted' WHERE ended_at IS NULL")
            .bind(unix_ms())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn group_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RingGroup, StoreError> {
    let members: String = r.try_get("members")?;
    Ok(RingGroup {
        number: r.try_get("number")?,
        name: r.try_get("name")?,
        strategy: Strategy::parse(&r.try_get::<String, _>("strategy")?)?,
        members: members.split(',').filter(|m| !m.trim().is_empty()).map(Dest::parse).collect::<Result<_, _>>()?,
        member_timeout_secs: r.try_get::<i64, _>("member_timeout")?.clamp(1, 600) as u32,
        timeout_secs: r.try_get::<i64, _>("timeout")?.clamp(1, 3600) as u32,
        overflow: opt_dest(r.try_get("overflow")?),
        skip_busy: r.try_get::<i64, _>("skip_busy")? != 0,
        rr_next: r.try_get::<i64, _>("rr_next")?.max(0) as u32,
    })
}

fn trunk_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Trunk, StoreError> {
    let host: String = r.try_get("host")?;
    Ok(Trunk {
        name: r.try_get("name")?,
        host: host.parse().map_err(|_| StoreError::Invalid(format!("trunk host {host:?} is not ip:port")))?,
        transport: TrunkTransport::parse(&r.try_get::<String, _>("transport")?)?,
        username: r.try_get("username")?,
        password: r.try_get("password")?,
        priority: r.try_get("priority")?,
        register: r.try_get::<i64, _>("register")? != 0,
        state: r.try_get("state")?,
        state_detail: r.try_get("state_detail")?,
        state_at: r.try_get("state_at")?,
    })
}
