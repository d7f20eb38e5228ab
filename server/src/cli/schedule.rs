//! `tsunagu schedule` and `tsunagu disaster`: business-hour schedules and
//! disaster mode from the command line (the same as the web app's).

use super::open_store;
use super::pbx::DataArgs;
use crate::schedule::{self, Schedule};
use crate::server::BoxError;
use crate::store::{Dest, SETTING_DISASTER_MODE};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Add or replace a schedule (a destination `schedule:NAME`).
    Add {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        /// Opening hours in Japan time, e.g. "mon-fri 08:30-17:15; sat 09:00-12:00"
        /// (empty: never open).
        #[arg(long)]
        hours: String,
        /// Where calls go in opening hours.
        #[arg(long)]
        open: String,
        /// Where calls go outside them.
        #[arg(long)]
        closed: String,
        /// Where calls go on public holidays and closed days (default: --closed).
        #[arg(long)]
        holiday: Option<String>,
        /// Where calls go in disaster mode (default: no change).
        #[arg(long)]
        disaster: Option<String>,
        /// Closed every year, e.g. "12-29..01-03, 08-13".
        #[arg(long, default_value = "")]
        closed_days: String,
        /// Public holidays are working days.
        #[arg(long)]
        no_holidays: bool,
        /// One-off dates, e.g. "2026-12-28 closed; 2027-01-04 10:00-15:00".
        #[arg(long, default_value = "")]
        overrides: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    Remove {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// List schedules with where a call would go now.
    List {
        #[command(flatten)]
        d: DataArgs,
    },
}

pub async fn schedule(cmd: ScheduleCommand) -> Result<(), BoxError> {
    match cmd {
        ScheduleCommand::Add { d, name, hours, open, closed, holiday, disaster, closed_days, no_holidays, overrides, label } => {
            let s = Schedule {
                name: name.clone(),
                label,
                hours: schedule::parse_hours(&hours)?,
                open: Dest::parse(&open)?,
                closed: Dest::parse(&closed)?,
                holiday: holiday.as_deref().map(Dest::parse).transpose()?,
                disaster: disaster.as_deref().map(Dest::parse).transpose()?,
                closed_days: schedule::parse_closed_days(&closed_days)?,
                use_holidays: !no_holidays,
                overrides: schedule::parse_overrides(&overrides)?,
            };
            open_store(&d.data, d.config.as_deref()).await?.put_schedule(&s).await?;
            println!("schedule {name} saved");
        }
        ScheduleCommand::Remove { d, name } => {
            open_store(&d.data, d.config.as_deref()).await?.remove_schedule(&name).await?;
            println!("schedule {name} removed");
        }
        ScheduleCommand::List { d } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let disaster = store.setting(SETTING_DISASTER_MODE).await? == "on";
            for s in store.list_schedules().await? {
                let (to, why) = s.route_at(crate::store::unix_ms() / 1000, disaster);
                println!("{}\t{}\thours={:?}\topen={}\tclosed={}\tnow={to} ({why:?})", s.name, s.label, schedule::hours_text(&s.hours), s.open, s.closed);
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct DisasterArgs {
    #[command(flatten)]
    d: DataArgs,
    /// on or off.
    #[arg(value_parser = ["on", "off"])]
    state: String,
}

pub async fn disaster(a: DisasterArgs) -> Result<(), BoxError> {
    let store = open_store(&a.d.data, a.d.config.as_deref()).await?;
    store.set_setting(SETTING_DISASTER_MODE, &a.state).await?;
    crate::api::audit::record(store.pool(), "(command line)", "disaster_mode", "", None, Some(serde_json::json!({ "on": a.state == "on" })), "").await;
    println!("disaster mode {}", a.state);
    Ok(())
}
