//! `tsunagu admin`: the first admin, and the way back in when every admin
//! is locked out (run on the server, so whoever runs it already holds the
//! data directory).

use super::pbx::DataArgs;
use super::open_store;
use crate::api::accounts::{self, AdminSpec};
use crate::api::rights::{Right, Role};
use crate::server::BoxError;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add an admin; prints a one-time password, changed at first sign-in.
    Add {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        /// system, org, group, auditor, supervisor or readonly.
        #[arg(long)]
        role: String,
        /// Rights nobody has unless granted: recordings, devices (comma-separated).
        #[arg(long, default_value = "")]
        rights: String,
    },
    /// Give an admin a new one-time password and unlock the account.
    ResetPassword {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// Make an admin enrol TOTP again (a lost phone).
    ResetMfa {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// List admins with their roles.
    List {
        #[command(flatten)]
        d: DataArgs,
    },
}

pub async fn admin(cmd: AdminCommand) -> Result<(), BoxError> {
    match cmd {
        AdminCommand::Add { d, name, role, rights } => {
            let role = Role::parse(&role).ok_or_else(|| format!("--role {role:?}: expected system, org, group, auditor, supervisor or readonly"))?;
            let rights = rights
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| Right::parse(r).ok_or_else(|| format!("--rights: unknown right {r:?} (recordings, devices)")))
                .collect::<Result<Vec<_>, _>>()?;
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let spec = AdminSpec { name: name.clone(), role, rights, departments: Vec::new(), dids: Vec::new() };
            let password = accounts::create_admin(store.pool(), &spec).await.map_err(|e| e.message)?;
            crate::api::audit::record(store.pool(), "(command line)", "admin_added", &name, None, Some(serde_json::json!({ "role": role.as_str() })), "").await;
            println!("added admin {name} ({})", role.as_str());
            println!("one-time password: {password}");
            println!("(sign in at the web app; a new password and TOTP enrolment follow)");
        }
        AdminCommand::ResetPassword { d, name } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let password = accounts::reset_password(store.pool(), &name).await.map_err(|e| e.message)?;
            crate::api::audit::record(store.pool(), "(command line)", "admin_password_reset", &name, None, None, "").await;
            println!("one-time password for {name}: {password}");
        }
        AdminCommand::ResetMfa { d, name } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            accounts::reset_mfa(store.pool(), &name).await.map_err(|e| e.message)?;
            crate::api::audit::record(store.pool(), "(command line)", "admin_mfa_reset", &name, None, None, "").await;
            println!("{name} enrols TOTP again at the next sign-in");
        }
        AdminCommand::List { d } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            for a in accounts::list_admins(store.pool()).await? {
                let rights = accounts::rights_text(&a.rights);
                println!("{}\t{}\trights={}\tmfa={}", a.name, a.role.as_str(), if rights.is_empty() { "-" } else { &rights }, if a.totp_secret.is_some() { "yes" } else { "no" });
            }
        }
    }
    Ok(())
}
