//! Command-line configuration of calls: ring groups, forwarding, caller ID,
//! carrier trunks, DIDs, settings, and the call records. Every command
//! writes the store; a running server reads it at the next call.

use super::open_store;
use crate::server::BoxError;
use crate::store::{CallRecord, CallerIdChoice, Dest, RingGroup, SqliteStore, Strategy, Trunk, TrunkTransport};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct DataArgs {
    /// Data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Configuration file (for the realm of a new data directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Add or replace a ring group.
    Add {
        #[command(flatten)]
        d: DataArgs,
        /// The group's number (dialled internally, or a DID's destination).
        number: String,
        #[arg(long, default_value = "")]
        name: String,
        /// simultaneous, sequential, round-robin or longest-idle.
        #[arg(long, default_value = "simultaneous")]
        strategy: String,
        /// Members in order: extensions or outside numbers, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
        /// Seconds each member rings (sequential, round-robin, longest-idle).
        #[arg(long, default_value_t = 15)]
        member_timeout: u32,
        /// Seconds the group rings in all before the overflow.
        #[arg(long, default_value_t = 60)]
        timeout: u32,
        /// Where unanswered calls go: user:EXT, group:NUMBER, number:DIGITS.
        #[arg(long)]
        overflow: Option<String>,
        /// Skip members already on a call.
        #[arg(long)]
        skip_busy: bool,
        #[command(flatten)]
        media: GroupMediaArgs,
    },
    Remove {
        #[command(flatten)]
        d: DataArgs,
        number: String,
    },
    List {
        #[command(flatten)]
        d: DataArgs,
    },
}

/// Announcements of a ring group (each "" for none; absent: unchanged).
#[derive(Args)]
pub struct GroupMediaArgs {
    /// Hold music for calls to this group.
    #[arg(long)]
    moh: Option<String>,
    /// Announcement played before the group rings.
    #[arg(long)]
    greeting: Option<String>,
    /// Announcement repeated while a caller waits.
    #[arg(long)]
    queue_announcement: Option<String>,
    /// Seconds between two waiting announcements (5 to 600; 0: the default, 30).
    #[arg(long)]
    queue_announcement_secs: Option<u32>,
}

/// An announcement option: absent keeps `old`, "" clears.
fn media_arg(given: Option<String>, old: Option<String>) -> Option<String> {
    match given {
        None => old,
        Some(v) if v.trim().is_empty() => None,
        Some(v) => Some(v.trim().to_string()),
    }
}

#[derive(Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub d: DataArgs,
    pub extension: String,
    /// Forward every call.
    #[arg(long)]
    pub always: Option<String>,
    /// Forward when the user is already on a call or every device says busy.
    #[arg(long)]
    pub busy: Option<String>,
    /// Forward when nobody answers within --after seconds.
    #[arg(long)]
    pub no_answer: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub after: u32,
    /// Forward when no device is registered.
    #[arg(long)]
    pub unregistered: Option<String>,
    /// Remove all forwarding of the extension.
    #[arg(long)]
    pub clear: bool,
}

#[derive(Args)]
pub struct CallerIdArgs {
    #[command(flatten)]
    pub d: DataArgs,
    pub extension: String,
    /// main (the city's main number) or own (the user's DID).
    #[arg(long)]
    pub show: Option<String>,
    /// The user's own DID.
    #[arg(long)]
    pub did: Option<String>,
}

#[derive(Subcommand)]
pub enum TrunkCommand {
    /// Add or replace a carrier trunk.
    Add {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        /// The carrier's SIP address, ip:port.
        #[arg(long)]
        host: std::net::SocketAddr,
        #[arg(long, default_value = "udp")]
        transport: String,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        password: Option<String>,
        /// Register with the credentials (else the carrier knows us by address).
        #[arg(long)]
        register: bool,
        /// Lower is tried first for outside calls.
        #[arg(long, default_value_t = 10)]
        priority: i64,
    },
    Remove {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// Show each trunk and its state as the running server last saw it.
    Status {
        #[command(flatten)]
        d: DataArgs,
    },
}

#[derive(Subcommand)]
pub enum DidCommand {
    /// Route a public number: --to user:EXT, group:NUMBER or number:DIGITS.
    Add {
        #[command(flatten)]
        d: DataArgs,
        number: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Hold music for calls on this number (an announcement; "" for none; default: unchanged).
        #[arg(long)]
        moh: Option<String>,
        /// Announcement played before anything rings ("" for none; default: unchanged).
        #[arg(long)]
        greeting: Option<String>,
    },
    /// Import DIDs from CSV with the header `number,destination[,label]`;
    /// all rows or none.
    Import {
        #[command(flatten)]
        d: DataArgs,
        file: PathBuf,
    },
    Remove {
        #[command(flatten)]
        d: DataArgs,
        number: String,
    },
    List {
        #[command(flatten)]
        d: DataArgs,
    },
}

#[derive(Subcommand)]
pub enum SettingCommand {
    /// main_number, outside_prefix, cid_main_prefix, cid_own_prefix.
    Set {
        #[command(flatten)]
        d: DataArgs,
        key: String,
        value: String,
    },
    Get {
        #[command(flatten)]
        d: DataArgs,
        key: String,
    },
}

#[derive(Args)]
pub struct CallsArgs {
    #[command(flatten)]
    pub d: DataArgs,
    /// Only calls this extension made, was called on, or answered.
    #[arg(long)]
    pub user: Option<String>,
    /// CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

async fn store_of(d: &DataArgs) -> Result<SqliteStore, BoxError> {
    open_store(&d.data, d.config.as_deref()).await
}

fn dest(s: &str) -> Result<Dest, BoxError> {
    Ok(Dest::parse(s)?)
}

fn opt_dest(s: &Option<String>) -> Result<Option<Dest>, BoxError> {
    s.as_deref().map(dest).transpose()
}

pub async fn group(cmd: GroupCommand) -> Result<(), BoxError> {
    match cmd {
        GroupCommand::Add { d, number, name, strategy, members, member_timeout, timeout, overflow, skip_busy, media } => {
            crate::store::validate_extension(&number)?;
            let g = RingGroup {
                number: number.clone(),
                name,
                strategy: Strategy::parse(&strategy)?,
                members: members.iter().map(|m| dest(m)).collect::<Result<_, _>>()?,
                member_timeout_secs: member_timeout.clamp(1, 600),
                timeout_secs: timeout.clamp(1, 3600),
                overflow: opt_dest(&overflow)?,
                skip_busy,
                rr_next: 0,
            };
            let store = store_of(&d).await?;
            let old = store.group_media(&number).await?;
            let new = crate::store::GroupMedia {
                moh: media_arg(media.moh, old.moh.clone()),
                greeting: media_arg(media.greeting, old.greeting.clone()),
                queue_announcement: media_arg(media.queue_announcement, old.queue_announcement.clone()),
                queue_announcement_secs: match media.queue_announcement_secs {
                    None => old.queue_announcement_secs,
                    Some(0) => None,
                    Some(s) => Some(s),
                },
            };
            // Checked first, so a bad name changes nothing.
            store.check_media(&new).await?;
            store.put_ring_group(&g).await?;
            store.set_group_media(&number, &new).await?;
            println!("group {number} saved");
        }
        GroupCommand::Remove { d, number } => {
            store_of(&d).await?.remove_ring_group(&number).await?;
            println!("group {number} removed");
        }
        GroupCommand::List { d } => {
            for g in store_of(&d).await?.list_ring_groups().await? {
                let members: Vec<String> = g.members.iter().map(Dest::to_string).collect();
                println!(
                    "{}\t{}\t{}\tmembers={}\tmember_timeout={}s\ttimeout={}s\toverflow={}\tskip_busy={}",
                    g.number,
                    g.name,
                    g.strategy.as_str(),
                    members.join(","),
                    g.member_timeout_secs,
                    g.timeout_secs,
                    g.overflow.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                    g.skip_busy
                );
            }
        }
    }
    Ok(())
}

pub async fn forward(a: ForwardArgs) -> Result<(), BoxError> {
    let store = store_of(&a.d).await?;
    let mut s = store.user_settings(&a.extension).await?;
    if a.clear {
        s.fwd_always = None;
        s.fwd_busy = None;
        s.fwd_no_answer = None;
        s.fwd_unregistered = None;
    }
    if a.always.is_some() {
        s.fwd_always = opt_dest(&a.always)?;
    }
    if a.busy.is_some() {
        s.fwd_busy = opt_dest(&a.busy)?;
    }
    if a.no_answer.is_some() {
        s.fwd_no_answer = opt_dest(&a.no_answer)?;
        s.fwd_no_answer_secs = a.after.clamp(1, 600);
    }
    if a.unregistered.is_some() {
        s.fwd_unregistered = opt_dest(&a.unregistered)?;
    }
    store.set_user_settings(&s).await?;
    let show = |d: &Option<Dest>| d.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "{}: always={} busy={} no_answer={} after={}s unregistered={}",
        a.extension,
        show(&s.fwd_always),
        show(&s.fwd_busy),
        show(&s.fwd_no_answer),
        s.fwd_no_answer_secs,
        show(&s.fwd_unregistered)
    );
    Ok(())
}

pub async fn caller_id(a: CallerIdArgs) -> Result<(), BoxError> {
    let store = store_of(&a.d).await?;
    let mut s = store.user_settings(&a.extension).await?;
    match a.show.as_deref() {
        Some("main") => s.caller_id = CallerIdChoice::Main,
        Some("own") => s.caller_id = CallerIdChoice::Own,
        Some(other) => return Err(format!("--show {other:?}: expected main or own").into()),
        None => {}
    }
    if let Some(did) = a.did {
        if !did.is_empty() && !did.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("--did {did:?}: digits only").into());
        }
        s.own_did = (!did.is_empty()).then_some(did);
    }
    store.set_user_settings(&s).await?;
    println!("{}: caller id {} (own DID {})", a.extension, if s.caller_id == CallerIdChoice::Own { "own" } else { "main" }, s.own_did.as_deref().unwrap_or("-"));
    Ok(())
}

pub async fn trunk(cmd: TrunkCommand) -> Result<(), BoxError> {
    match cmd {
        TrunkCommand::Add { d, name, host, transport, username, password, register, priority } => {
            let t = Trunk {
                name: name.clone(),
                host,
                transport: TrunkTransport::parse(&transport)?,
                username,
                password,
                priority,
                register,
                state: "unknown".into(),
                state_detail: String::new(),
                state_at: 0,
            };
            store_of(&d).await?.put_trunk(&t).await?;
            println!("trunk {name} saved");
        }
        TrunkCommand::Remove { d, name } => {
            store_of(&d).await?.remove_trunk(&name).await?;
            println!("trunk {name} removed");
        }
        TrunkCommand::Status { d } => {
            let trunks = store_of(&d).await?.list_trunks().await?;
            if trunks.is_empty() {
                println!("no trunks");
            }
            for t in trunks {
                let auth = if t.register { "register" } else { "ip" };
                let detail = if t.state_detail.is_empty() { String::new() } else { format!(" ({})", t.state_detail) };
                println!("{}\t{}\t{}\tpriority={}\tauth={}\tstate={}{}\tsince={}", t.name, t.host, t.transport.as_str(), t.priority, auth, t.state, detail, t.state_at);
            }
        }
    }
    Ok(())
}

/// DIDs from CSV with the header `number,destination[,label]`; every bad
/// row is reported with its line number.
pub fn dids_from_csv(text: &str) -> Result<Vec<(String, Dest, String)>, String> {
    let rows = crate::csv::parse(text).map_err(|e| e.to_string())?;
    match crate::store::dids_from_rows(&rows) {
        Ok(dids) => Ok(dids.into_iter().map(|(_, n, d, l)| (n, d, l)).collect()),
        Err(errors) => Err(format!("nothing was imported:\n{}", errors.iter().map(|(line, e)| format!("line {line}: {e}")).collect::<Vec<_>>().join("\n"))),
    }
}

pub async fn did(cmd: DidCommand) -> Result<(), BoxError> {
    match cmd {
        DidCommand::Add { d, number, to, label, moh, greeting } => {
            let number = crate::store::did_number(&number)?;
            crate::store::validate_did_label(&label)?;
            let store = store_of(&d).await?;
            let old = store.did_media(&number).await?;
            let new = crate::store::DidMedia { moh: media_arg(moh, old.moh.clone()), greeting: media_arg(greeting, old.greeting.clone()) };
            store.check_media(&crate::store::GroupMedia { moh: new.moh.clone(), greeting: new.greeting.clone(), ..Default::default() }).await?;
            store.put_dids(&[(number.clone(), dest(&to)?, label)]).await?;
            store.set_did_media(&number, &new).await?;
            println!("{number} -> {to}");
        }
        DidCommand::Import { d, file } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let text = crate::csv::decode(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let dids = dids_from_csv(&text)?;
            let n = store_of(&d).await?.put_dids(&dids).await?;
            println!("imported {n} numbers");
        }
        DidCommand::Remove { d, number } => {
            store_of(&d).await?.remove_did(&number).await?;
            println!("{number} removed");
        }
        DidCommand::List { d } => {
            let store = store_of(&d).await?;
            let media = store.list_did_media().await?;
            for (n, dest, label) in store.list_dids().await? {
                // Media columns only when set, so the usual lines stay as they were.
                let m = media.get(&n).cloned().unwrap_or_default();
                let extra: String = [("moh", m.moh), ("greeting", m.greeting)].into_iter().filter_map(|(k, v)| v.map(|v| format!("\t{k}={v}"))).collect();
                println!("{n}\t{dest}\t{label}{extra}");
            }
        }
    }
    Ok(())
}

pub async fn setting(cmd: SettingCommand) -> Result<(), BoxError> {
    match cmd {
        SettingCommand::Set { d, key, value } => {
            let store = store_of(&d).await?;
            // Empty or `off`: no hold music (holds pass across as they are).
            if key == crate::store::SETTING_MUSIC_ON_HOLD && value != crate::announce::HOLD_MUSIC && !value.is_empty() && value != "off" {
                store.check_media(&crate::store::GroupMedia { moh: Some(value.clone()), ..Default::default() }).await?;
            }
            store.set_setting(&key, &value).await?;
            println!("{key} = {value}");
        }
        SettingCommand::Get { d, key } => println!("{}", store_of(&d).await?.setting(&key).await?),
    }
    Ok(())
}

fn iso(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return String::new() };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn calls_csv(records: &[CallRecord]) -> String {
    let mut out = String::from("id,direction,caller,callee,did,trunk,start,answer,end,duration_secs,result,answered_by,answered_device,caller_id_shown\n");
    for c in records {
        let fields = [
            c.id.clone(),
            c.direction.clone(),
            c.caller.clone(),
            c.callee.clone(),
            c.did.clone().unwrap_or_default(),
            c.trunk.clone().unwrap_or_default(),
            iso(Some(c.started_at)),
            iso(c.answered_at),
            iso(c.ended_at),
            c.duration_secs().to_string(),
            c.result.clone(),
            c.answered_by.clone().unwrap_or_default(),
            c.answered_device.clone().unwrap_or_default(),
            c.caller_id_shown.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

pub async fn calls(a: CallsArgs) -> Result<(), BoxError> {
    let records = store_of(&a.d).await?.list_calls(a.user.as_deref()).await?;
    if a.csv {
        print!("{}", calls_csv(&records));
        return Ok(());
    }
    println!("{:<20} {:<9} {:<14} {:<14} {:<12} {:>6} {:<11} {:<12} trunk", "start", "direction", "caller", "callee", "did", "secs", "result", "answered_by");
    for c in &records {
        println!(
            "{:<20} {:<9} {:<14} {:<14} {:<12} {:>6} {:<11} {:<12} {}",
            iso(Some(c.started_at)),
            c.direction,
            c.caller,
            c.callee,
            c.did.as_deref().unwrap_or("-"),
            c.duration_secs(),
            c.result,
            c.answered_by.as_deref().unwrap_or("-"),
            c.trunk.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_csv_reports_rows_and_normalises() {
        let ok = dids_from_csv("number,destination,label\n+81312345678,user:1001,Main\n0312345679,group:3000,\n").unwrap();
        assert_eq!(ok[0].0, "0312345678");
        assert_eq!(ok[1].1, Dest::Group("3000".into()));
        let err = dids_from_csv("number,destination\n03x,user:1001\n0312345678,bogus:1\n0312345678,user:1\n0312345678,user:2\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("line 3") && err.contains("line 5"), "{err}");
        assert!(!err.contains("line 4"), "{err}");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso(Some(1_795_478_400_000)), "2026-11-24T00:00:00Z");
    }

    #[test]
    fn call_csv_quotes_fields() {
        let c = CallRecord { id: "x".into(), caller: "a,b".into(), started_at: 0, result: "answered".into(), ..Default::default() };
        let text = calls_csv(&[c]);
        assert!(text.lines().nth(1).unwrap().contains("\"a,b\""));
    }
}
