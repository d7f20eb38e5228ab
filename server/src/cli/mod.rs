//! The `tsunagu` command line. The spellings here are a contract that
//! scripts and outside checks rely on: keep them.

use crate::config::Config;
use crate::registrar::unix_now;
use crate::server::{serve, BoxError};
use crate::store::{SqliteStore, Store, StoreError, User};
mod admin;
mod announcement;
mod holidays;
mod ivr;
mod pbx;
mod recording;
mod schedule;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsunagu_sip::digest::StoredCredentials;

#[derive(Parser)]
#[command(name = "tsunagu", version, about = "Tsunagu cloud PBX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the PBX.
    Serve(ServeArgs),
    /// Seed a demo organisation (extensions 1001-1010) and run the PBX.
    Demo(DemoArgs),
    /// Manage users (extensions).
    #[command(subcommand)]
    User(UserCommand),
    /// Ring groups.
    #[command(subcommand)]
    Group(pbx::GroupCommand),
    /// Call forwarding of an extension.
    Forward(pbx::ForwardArgs),
    /// Caller ID an extension shows on outside calls.
    CallerId(pbx::CallerIdArgs),
    /// Carrier SIP trunks.
    #[command(subcommand)]
    Trunk(pbx::TrunkCommand),
    /// Public numbers (DIDs) and where they ring.
    #[command(subcommand)]
    Did(pbx::DidCommand),
    /// PBX-wide settings (main number, prefixes).
    #[command(subcommand)]
    Setting(pbx::SettingCommand),
    /// Call records.
    Calls(pbx::CallsArgs),
    /// Admins of the web app and API.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Japanese public holidays of a year (computed).
    Holidays(holidays::HolidaysArgs),
    /// Business-hour schedules (destinations schedule:NAME).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Disaster mode: schedules send calls to their disaster destination.
    Disaster(schedule::DisasterArgs),
    /// Recorded prompts and hold music (destinations announcement:NAME).
    #[command(subcommand)]
    Announcement(announcement::AnnouncementCommand),
    /// Call recordings: list, purge now, who is recorded.
    #[command(subcommand)]
    Recording(recording::RecordingCommand),
    /// Voice menus (IVR, destinations ivr:NAME).
    #[command(subcommand)]
    Ivr(ivr::IvrCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory (database, certificates).
    #[arg(long)]
    data: Option<PathBuf>,
    /// SIP listen address for UDP and TCP; TLS uses the next port.
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// HTTP listen address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value = "tsunagu-demo")]
    data: PathBuf,
    #[arg(long)]
    sip: Option<SocketAddr>,
    #[arg(long)]
    http: Option<SocketAddr>,
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an extension.
    Add {
        #[arg(long)]
        data: PathBuf,
        /// Configuration file (for the realm of a new data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        extension: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Remove an extension (its registrations go with it).
    Remove {
        #[arg(long)]
        data: PathBuf,
        /// Configuration file (for the realm of a new data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        extension: String,
    },
    /// List extensions with their registered contacts.
    List {
        #[arg(long)]
        data: PathBuf,
        /// Configuration file (for the realm of a new data directory).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Add users from a CSV file with the header `extension,password,name`;
    /// all rows or none.
    Import {
        #[arg(long)]
        data: PathBuf,
        /// Configuration file (for the realm of a new data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        file: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TSUNAGU_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).try_init();
}

fn load_config(file: Option<&Path>, data: Option<PathBuf>, sip: Option<SocketAddr>, http: Option<SocketAddr>) -> Result<Config, BoxError> {
    let mut cfg = Config::load(file)?;
    if let Some(d) = data {
        cfg.data = d;
    }
    if let Some(s) = sip {
        cfg.sip.listen = s;
    }
    if let Some(h) = http {
        cfg.http.listen = h;
    }
    Ok(cfg)
}

/// Open the store of a data directory with the configured realm (the
/// environment may set it; the store keeps the one it was made with).
async fn open_store(data: &Path, config: Option<&Path>) -> Result<SqliteStore, BoxError> {
    let cfg = Config::load(config)?;
    Ok(SqliteStore::open(data, &cfg.sip.realm).await?)
}

async fn run(cmd: Command) -> Result<(), BoxError> {
    match cmd {
        Command::Serve(a) => serve(load_config(a.config.as_deref(), a.data, a.sip, a.http)?).await,
        Command::Demo(a) => {
            let cfg = load_config(a.config.as_deref(), Some(a.data), a.sip, a.http)?;
            seed_demo(&cfg).await?;
            serve(cfg).await
        }
        Command::User(u) => user_command(u).await,
        Command::Group(c) => pbx::group(c).await,
        Command::Forward(a) => pbx::forward(a).await,
        Command::CallerId(a) => pbx::caller_id(a).await,
        Command::Trunk(c) => pbx::trunk(c).await,
        Command::Did(c) => pbx::did(c).await,
        Command::Setting(c) => pbx::setting(c).await,
        Command::Calls(a) => pbx::calls(a).await,
        Command::Admin(c) => admin::admin(c).await,
        Command::Holidays(a) => holidays::holidays(a).await,
        Command::Schedule(c) => schedule::schedule(c).await,
        Command::Disaster(a) => schedule::disaster(a).await,
        Command::Announcement(c) => announcement::announcement(c).await,
        Command::Recording(c) => recording::recording(c).await,
        Command::Ivr(c) => ivr::ivr(c).await,
    }
}

fn check_password(p: &str) -> Result<(), String> {
    crate::store::validate_sip_password(p).map_err(|e| e.detail())
}

fn new_user(realm: &str, extension: &str, password: &str, name: &str) -> User {
    User { extension: extension.to_string(), name: name.to_string(), credentials: StoredCredentials::from_password(extension, realm, password) }
}

async fn user_command(cmd: UserCommand) -> Result<(), BoxError> {
    match cmd {
        UserCommand::Add { data, config, extension, password, name } => {
            check_password(&password)?;
            let store = open_store(&data, config.as_deref()).await?;
            let realm = store.realm().await?;
            store.add_user(new_user(&realm, &extension, &password, &name)).await?;
            println!("added {extension}");
        }
        UserCommand::Remove { data, config, extension } => {
            let store = open_store(&data, config.as_deref()).await?;
            store.remove_user(&extension).await?;
            println!("removed {extension}");
        }
        UserCommand::List { data, config } => {
            let store = open_store(&data, config.as_deref()).await?;
            let users = store.list_users().await?;
            let bindings = store.list_bindings().await?;
            let now = unix_now() as i64;
            for u in users {
                let mine: Vec<_> = bindings.iter().filter(|b| b.extension == u.extension && b.expires_at > now).collect();
                println!("{}\t{}\t{} contact(s)", u.extension, u.name, mine.len());
                for b in mine {
                    let mut line = format!("  <{}> expires={} transport={} source={}", b.contact, b.expires_at - now, b.transport, b.source);
                    if let Some(i) = &b.instance {
                        line.push_str(&format!(" instance={i}"));
                    }
                    if let Some(p) = &b.pn_provider {
                        line.push_str(&format!(" pn-provider={p}"));
                    }
                    if let Some(ua) = &b.user_agent {
                        line.push_str(&format!(" user-agent={ua:?}"));
                    }
                    println!("{line}");
                }
            }
        }
        UserCommand::Import { data, config, file } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let text = crate::csv::decode(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let store = open_store(&data, config.as_deref()).await?;
            let realm = store.realm().await?;
            let users = users_from_csv(&text, &realm)?;
            let n = store.add_users(users).await.map_err(|e| match e {
                StoreError::Duplicate(ext) => format!("extension {ext} already exists; nothing was imported"),
                other => other.to_string(),
            })?;
            println!("imported {n} users");
        }
    }
    Ok(())
}

/// Users from CSV text with the header `extension,password,name`. Every bad
/// row is reported with its line number; any bad row stops the import.
pub fn users_from_csv(text: &str, realm: &str) -> Result<Vec<User>, String> {
    let rows = crate::csv::parse(text).map_err(|e| e.to_string())?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else { return Err("the file is empty".into()) };
    let col = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(ext_i), Some(pw_i)) = (col("extension"), col("password")) else {
        return Err("line 1: the header must name the columns extension,password[,name]".into());
    };
    let name_i = col("name");
    let mut errors = Vec::new();
    let mut users = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, fields) in rows {
        let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
        let (ext, pw) = (get(ext_i), get(pw_i));
        if let Err(e) = crate::store::validate_extension(ext) {
            errors.push(format!("line {line}: {e}"));
            continue;
        }
        if let Err(e) = check_password(pw) {
            errors.push(format!("line {line}: extension {ext}: {e}"));
            continue;
        }
        if !seen.insert(ext.to_string()) {
            errors.push(format!("line {line}: extension {ext} appears twice in the file"));
            continue;
        }
        users.push(new_user(realm, ext, pw, name_i.map(get).unwrap_or("")));
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(format!("nothing was imported:\n{}", errors.join("\n")))
    }
}

async fn seed_demo(cfg: &Config) -> Result<(), BoxError> {
    let store = SqliteStore::open(&cfg.data, &cfg.sip.realm).await?;
    let realm = store.realm().await?;
    let existing = store.list_users().await?;
    let exts: Vec<String> = (1001..=1010).map(|e| e.to_string()).collect();
    if exts.iter().any(|e| existing.iter().any(|u| &u.extension == e)) {
        println!("demo extensions 1001-1010 already exist in {} (their passwords were printed when they were made)", cfg.data.display());
        return Ok(());
    }
    let mut users = Vec::new();
    println!("demo organisation: extensions and their SIP passwords (shown once)");
    for (i, ext) in exts.iter().enumerate() {
        let password = crate::api::accounts::random_text(12);
        println!("{ext}\t{password}");
        users.push(new_user(&realm, ext, &password, &format!("Demo {}", i + 1)));
    }
    store.add_users(users).await?;
    let group = crate::store::RingGroup {
        number: "3000".into(),
        name: "Demo group".into(),
        strategy: crate::store::Strategy::Simultaneous,
        members: ["1001", "1002", "1003"].iter().map(|e| crate::store::Dest::User(e.to_string())).collect(),
        member_timeout_secs: 15,
        timeout_secs: 60,
        overflow: None,
        skip_busy: false,
        rr_next: 0,
    };
    store.put_ring_group(&group).await?;
    println!("ring group 3000 rings 1001, 1002 and 1003 at once");
    // The web app's first admin, so the demo can be administered at once.
    let spec = crate::api::accounts::AdminSpec { name: "admin".into(), role: crate::api::rights::Role::System, rights: Vec::new(), departments: Vec::new(), dids: Vec::new() };
    match crate::api::accounts::create_admin(store.pool(), &spec).await {
        Ok(pw) => {
            // Listening on every address: this machine's browser reaches it on loopback.
            let mut url = cfg.http.listen;
            if url.ip().is_unspecified() {
                url.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            println!("web admin: http://{url}/ name admin, one-time password {pw} (then TOTP enrolment and a new password)")
        }
        Err(e) => println!("web admin not created: {}", e.message),
    }
    println!("SIP: {} (UDP/TCP), TLS {}; realm {realm}; media on {}", cfg.sip.listen, cfg.tls_listen(), cfg.media_address());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_reports_every_bad_row() {
        let text = "extension,password,name\n2001,longenough1,A\n20x1,longenough2,B\n2003,short,C\n2001,longenough3,D\n";
        let err = users_from_csv(text, "r").unwrap_err();
        assert!(err.contains("line 3") && err.contains("line 4") && err.contains("line 5"), "{err}");
        assert!(!err.contains("line 2"), "{err}");
        let ok = users_from_csv("\u{feff}Extension,Password\n2001,longenough1\n", "r").unwrap();
        assert_eq!(ok.len(), 1);
        assert!(users_from_csv("a,b\n1,2\n", "r").unwrap_err().contains("header"));
    }
}
