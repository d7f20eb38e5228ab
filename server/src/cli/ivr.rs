//! `tsunagu ivr`: voice menus (IVR) from the command line, the same menus
//! the API and the web app edit. Changes are audited as made by
//! "(command line)" and are live at the next menu a caller enters.

use super::open_store;
use super::pbx::DataArgs;
use crate::api::ivr::menu_json;
use crate::ivr::{IvrAction, IvrMenu};
use crate::server::BoxError;
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum IvrCommand {
    /// Add or replace a menu (a destination `ivr:NAME`) with all its options.
    Add {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        /// The announcement that says the choices.
        #[arg(long)]
        prompt: String,
        /// An announcement played before the prompt on a caller's first entry.
        #[arg(long)]
        greeting: Option<String>,
        /// KEYS=ACTION, e.g. 1=group:3000, 2=ivr:sub, 0=repeat, 9=back,
        /// #=hangup (keys: 1 to 4 of 0-9 * #); repeat the flag for more.
        #[arg(long = "option", value_name = "KEYS=ACTION")]
        options: Vec<String>,
        /// After too many wrong keys or silences: a destination, back or
        /// hangup.
        #[arg(long, default_value = "hangup")]
        on_failure: String,
        /// Keys forming an extension number ring that extension.
        #[arg(long)]
        direct_dial: bool,
        /// How long to wait for the first key after the prompt (ms).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// How long to wait between keys of a longer entry (ms).
        #[arg(long, default_value_t = 2000)]
        inter_digit_ms: u64,
        /// Wrong keys or silences answered by playing the menu again.
        #[arg(long, default_value_t = 3)]
        max_repeats: u32,
        #[arg(long, default_value = crate::ivr::DEFAULT_INVALID_PROMPT)]
        invalid_prompt: String,
        #[arg(long, default_value = crate::ivr::DEFAULT_TIMEOUT_PROMPT)]
        timeout_prompt: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Remove a menu that nothing uses any more.
    Remove {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// List menus and their options.
    List {
        #[command(flatten)]
        d: DataArgs,
    },
    /// One menu in full.
    Show {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
}

fn options_text(m: &IvrMenu) -> String {
    m.options.iter().map(|(k, a)| format!("{k}={a}")).collect::<Vec<_>>().join(" ")
}

pub async fn ivr(cmd: IvrCommand) -> Result<(), BoxError> {
    match cmd {
        IvrCommand::Add { d, name, prompt, greeting, options, on_failure, direct_dial, timeout_ms, inter_digit_ms, max_repeats, invalid_prompt, timeout_prompt, label } => {
            let mut m = IvrMenu::new(&name, &prompt);
            m.label = label;
            m.greeting = greeting.filter(|g| !g.trim().is_empty());
            m.invalid_prompt = invalid_prompt;
            m.timeout_prompt = timeout_prompt;
            m.first_digit = Duration::from_millis(timeout_ms);
            m.inter_digit = Duration::from_millis(inter_digit_ms);
            m.max_repeats = max_repeats;
            m.on_failure = IvrAction::parse(&on_failure).map_err(|e| format!("--on-failure: {}", e.detail()))?;
            m.direct_dial = direct_dial;
            for o in &options {
                let (keys, action) = o.split_once('=').ok_or_else(|| format!("--option {o:?}: expected KEYS=ACTION, e.g. 1=group:3000"))?;
                crate::ivr::check_keys(keys.trim())?;
                let action = IvrAction::parse(action).map_err(|e| format!("--option {o:?}: {}", e.detail()))?;
                if m.options.insert(keys.trim().to_string(), action).is_some() {
                    return Err(format!("--option: keys {} given twice", keys.trim()).into());
                }
            }
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let before = store.ivr_menu(&name).await?.map(|o| menu_json(&o));
            store.put_ivr_menu(&m).await?;
            let action = if before.is_some() { "ivr_changed" } else { "ivr_added" };
            crate::api::audit::record(store.pool(), "(command line)", action, &name, before, Some(menu_json(&m)), "").await;
            println!("IVR menu {name} saved");
            for a in store.ivr_missing_announcements(&m).await? {
                println!("warning: announcement {a} does not exist yet (callers hear nothing in its place)");
            }
        }
        IvrCommand::Remove { d, name } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let before = store.ivr_menu(&name).await?.map(|o| menu_json(&o));
            store.remove_ivr_menu(&name).await?;
            crate::api::audit::record(store.pool(), "(command line)", "ivr_removed", &name, before, None, "").await;
            println!("IVR menu {name} removed");
        }
        IvrCommand::List { d } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            for m in store.list_ivr_menus().await? {
                println!("{}\t{}\tprompt={}\t{}\ton_failure={}{}", m.name, m.label, m.prompt, options_text(&m), m.on_failure, if m.direct_dial { "\tdirect-dial" } else { "" });
            }
        }
        IvrCommand::Show { d, name } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let m = store.ivr_menu(&name).await?.ok_or_else(|| format!("no such IVR menu {name}"))?;
            println!("name: {}", m.name);
            println!("label: {}", m.label);
            println!("greeting: {}", m.greeting.as_deref().unwrap_or("-"));
            println!("prompt: {}", m.prompt);
            println!("invalid prompt: {}", m.invalid_prompt);
            println!("timeout prompt: {}", m.timeout_prompt);
            println!("first key within: {} ms", m.first_digit.as_millis());
            println!("between keys: {} ms", m.inter_digit.as_millis());
            println!("max repeats: {}", m.max_repeats);
            println!("on failure: {}", m.on_failure);
            println!("direct dial: {}", if m.direct_dial { "yes" } else { "no" });
            for (k, a) in &m.options {
                println!("option {k}: {a}");
            }
            for a in store.ivr_missing_announcements(&m).await? {
                println!("warning: announcement {a} does not exist yet");
            }
        }
    }
    Ok(())
}
