//! The dial plan: what a dialled number means (an extension, a ring group,
//! an outside number through the carrier, an emergency number) and how a
//! destination rings (which devices or numbers, in which order, for how
//! long, and where the call goes when nobody answers or everyone is busy).
//! Everything is read from the store at call time, so configuration
//! changes apply to the next call.

use crate::calls::Presence;
use crate::registrar::Registrar;
use crate::store::{CallerIdChoice, Dest, RingGroup, SqliteStore, StoreError, Strategy};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// Emergency numbers: always allowed, with or without the outside prefix.
pub const EMERGENCY: [&str; 3] = ["110", "118", "119"];

/// Who rings in one step of a hunt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingTarget {
    /// Every registered device of the extension.
    Ext(String),
    /// An outside number (national format) through the trunks.
    External(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub targets: Vec<RingTarget>,
    /// How long this step rings before the next (None: until the hunt's end).
    pub timeout: Option<Duration>,
}

/// How one destination rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunt {
    /// What was called, for the call record (extension or group number).
    pub label: String,
    pub steps: VecDeque<Step>,
    /// Ring no longer than this in all (group timeout).
    pub overall: Option<Duration>,
    /// Where the call goes when nobody answered (forward on no answer,
    /// group overflow).
    pub on_no_answer: Option<Dest>,
    /// Where the call goes when every device said busy.
    pub on_busy: Option<Dest>,
    /// Skip extensions already on a call (checked as each step starts).
    pub skip_busy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Ring(Hunt),
    /// The PBX answers the call itself (an announcement or an IVR menu).
    Local(LocalApp),
    /// Refuse with this status.
    Reject(u16, &'static str),
}

/// What the PBX plays to a call it answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalApp {
    Announcement(String),
    Ivr(String),
}

/// How an outbound call presents itself, chosen per call by prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialled {
    pub dest: Option<Dest>,
    pub caller_id: Option<CallerIdChoice>,
    /// 184 (withhold) → Some(true), 186 (present) → Some(false).
    pub withhold: Option<bool>,
}

/// Japanese numbering for outside calls: 0AB-J fixed lines (10 digits),
/// 050 IP phones and 070/080/090 mobiles (11 digits), 020 (11), 0120 free
/// dial (10), 0800 (11), 0570 (10). International (010...) is not allowed
/// from the PBX.
pub fn is_valid_national(n: &str) -> bool {
    if !n.bytes().all(|b| b.is_ascii_digit()) || !n.starts_with('0') || n.starts_with("00") || n.starts_with("010") {
        return false;
    }
    let len = n.len();
    if n.starts_with("0120") || n.starts_with("0570") {
        return len == 10;
    }
    if n.starts_with("0800") {
        return len == 11;
    }
    if ["020", "050", "060", "070", "080", "090"].iter().any(|p| n.starts_with(p)) {
        return len == 11;
    }
    len == 10
}

/// Read what an extension dialled: caller-ID prefixes (`*81` main number,
/// `*82` own number by default), 184/186, the outside-line prefix,
/// emergency numbers, extensions and groups.
pub async fn parse_dialled(store: &SqliteStore, registrar: &Registrar, dialled: &str) -> Result<Dialled, StoreError> {
    let mut d = Dialled::default();
    let mut rest = dialled.trim().to_string();
    let main_prefix = store.setting(crate::store::SETTING_CID_MAIN_PREFIX).await?;
    let own_prefix = store.setting(crate::store::SETTING_CID_OWN_PREFIX).await?;
    let outside = store.setting(crate::store::SETTING_OUTSIDE_PREFIX).await?;
    if !main_prefix.is_empty() && rest.starts_with(&main_prefix) {
        d.caller_id = Some(CallerIdChoice::Main);
        rest = rest[main_prefix.len()..].to_string();
    } else if !own_prefix.is_empty() && rest.starts_with(&own_prefix) {
        d.caller_id = Some(CallerIdChoice::Own);
        rest = rest[own_prefix.len()..].to_string();
    }
    if EMERGENCY.contains(&rest.as_str()) {
        d.dest = Some(Dest::Number(rest));
        return Ok(d);
    }
    if registrar.has_user(&rest) || store.user_exists(&rest).await? {
        d.dest = Some(Dest::User(rest));
        return Ok(d);
    }
    if store.ring_group(&rest).await?.is_some() {
        d.dest = Some(Dest::Group(rest));
        return Ok(d);
    }
    if let Some(mut number) = rest.strip_prefix(outside.as_str()).filter(|_| !outside.is_empty()).map(str::to_string) {
        if let Some(n) = number.strip_prefix("184") {
            d.withhold = Some(true);
            number = n.to_string();
        } else if let Some(n) = number.strip_prefix("186") {
            d.withhold = Some(false);
            number = n.to_string();
        }
        if EMERGENCY.contains(&number.as_str()) || is_valid_national(&number) {
            d.dest = Some(Dest::Number(number));
        }
    }
    Ok(d)
}

/// The national form of a number a carrier sends: `+81312345678` becomes
/// `0312345678`; anything else is kept as sent.
pub fn national(number: &str) -> String {
    let n = number.trim();
    if let Some(rest) = n.strip_prefix("+81") {
        return format!("0{rest}");
    }
    n.to_string()
}

/// Forwarding and group chains are followed this deep at most.
const MAX_DEPTH: usize = 8;

/// How `dest` rings. `visited` carries the destinations this call already
/// went through: coming back to one is a forwarding loop, and stops.
pub async fn resolve(store: &SqliteStore, registrar: &Registrar, presence: &Presence, dest: &Dest, visited: &mut HashSet<String>) -> Result<Resolution, StoreError> {
    let mut dest = dest.clone();
    for _ in 0..MAX_DEPTH {
        let key = canonical(store, &dest).await?;
        if !visited.insert(key.to_string()) {
            tracing::warn!(dest = %key, "forwarding loop detected; stopped");
            metrics::counter!("tsunagu_forwarding_loops_total").increment(1);
            return Ok(Resolution::Reject(482, "Loop Detected"));
        }
        match key {
            Dest::User(ext) => {
                let s = store.user_settings(&ext).await?;
                if let Some(to) = s.fwd_always {
                    dest = to;
                    continue;
                }
                if registrar.bindings(&ext).is_empty() {
                    match s.fwd_unregistered {
                        Some(to) => {
                            dest = to;
                            continue;
                        }
                        None => return Ok(Resolution::Reject(480, "Temporarily Unavailable")),
                    }
                }
                if presence.is_busy(&ext) {
                    if let Some(to) = s.fwd_busy.clone() {
                        dest = to;
                        continue;
                    }
                }
                let timeout = s.fwd_no_answer.as_ref().map(|_| Duration::from_secs(u64::from(s.fwd_no_answer_secs)));
                return Ok(Resolution::Ring(Hunt {
                    label: ext.clone(),
                    steps: VecDeque::from([Step { targets: vec![RingTarget::Ext(ext)], timeout }]),
                    overall: None,
                    on_no_answer: s.fwd_no_answer,
                    on_busy: s.fwd_busy,
                    skip_busy: false,
                }));
            }
            Dest::Group(number) => {
                let Some(g) = store.ring_group(&number).await? else { return Ok(Resolution::Reject(404, "Not Found")) };
                return Ok(Resolution::Ring(group_hunt(store, presence, &g).await?));
            }
            Dest::Number(n) => {
                return Ok(Resolution::Ring(Hunt {
                    label: n.clone(),
                    steps: VecDeque::from([Step { targets: vec![RingTarget::External(n)], timeout: None }]),
                    overall: None,
                    on_no_answer: None,
                    on_busy: None,
                    skip_busy: false,
                }));
            }
            Dest::Any(_) => return Ok(Resolution::Reject(404, "Not Found")),
            Dest::Announcement(name) => return Ok(Resolution::Local(LocalApp::Announcement(name))),
            Dest::Ivr(name) => return Ok(Resolution::Local(LocalApp::Ivr(name))),
            Dest::Schedule(name) => {
                let Some(schedule) = store.schedule(&name).await? else { return Ok(Resolution::Reject(404, "Not Found")) };
                let disaster = store.setting(crate::store::SETTING_DISASTER_MODE).await? == "on";
                let clock = store.setting(crate::store::SETTING_SCHEDULE_CLOCK).await?;
                let now = match crate::schedule::parse_clock(&clock) {
                    Some(t) => {
                        tracing::warn!(schedule = %name, clock = %clock, "schedule_clock is set: schedules act as if it were that time");
                        t
                    }
                    None => crate::store::unix_ms() / 1000,
                };
                let (to, why) = schedule.route_at(now, disaster);
                tracing::info!(schedule = %name, to = %to, why = ?why, "schedule chose a destination");
                dest = to.clone();
            }
        }
    }
    Ok(Resolution::Reject(482, "Loop Detected"))
}

/// A bare number as an extension, a group or an outside number.
async fn canonical(store: &SqliteStore, dest: &Dest) -> Result<Dest, StoreError> {
    Ok(match dest {
        Dest::Any(n) => {
            if store.user_exists(n).await? {
                Dest::User(n.clone())
            } else if store.ring_group(n).await?.is_some() {
                Dest::Group(n.clone())
            } else if is_valid_national(n) || EMERGENCY.contains(&n.as_str()) {
                Dest::Number(n.clone())
            } else {
                Dest::Any(n.clone())
            }
        }
        d => d.clone(),
    })
}

fn member_target(m: &Dest) -> RingTarget {
    match m {
        Dest::Number(n) => RingTarget::External(n.clone()),
        // Refused when the group is saved; an old row rings nobody.
        Dest::Schedule(_) | Dest::Announcement(_) | Dest::Ivr(_) => RingTarget::Ext(m.to_string()),
        Dest::User(n) | Dest::Any(n) | Dest::Group(n) => {
            if n.starts_with('0') && is_valid_national(n) {
                RingTarget::External(n.clone())
            } else {
                RingTarget::Ext(n.clone())
            }
        }
    }
}

async fn group_hunt(store: &SqliteStore, presence: &Presence, g: &RingGroup) -> Result<Hunt, StoreError> {
    let mut members: Vec<RingTarget> = g.members.iter().map(member_target).collect();
    let overall = Some(Duration::from_secs(u64::from(g.timeout_secs)));
    let per = Some(Duration::from_secs(u64::from(g.member_timeout_secs)));
    let steps: VecDeque<Step> = match g.strategy {
        Strategy::Simultaneous => VecDeque::from([Step { targets: members, timeout: None }]),
        Strategy::Sequential | Strategy::RoundRobin | Strategy::LongestIdle => {
            if g.strategy == Strategy::RoundRobin {
                let start = store.next_round_robin(&g.number, members.len()).await?;
                let n = members.len().max(1);
                members.rotate_left(start % n);
            }
            if g.strategy == Strategy::LongestIdle {
                // Never-used first, then the longest since their last call ended.
                members.sort_by_key(|m| match m {
                    RingTarget::Ext(e) => presence.last_call_end(e),
                    RingTarget::External(_) => None,
                });
            }
            members.into_iter().map(|m| Step { targets: vec![m], timeout: per }).collect()
        }
    };
    Ok(Hunt { label: g.number.clone(), steps, overall, on_no_answer: g.overflow.clone(), on_busy: g.overflow.clone(), skip_busy: g.skip_busy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_numbering() {
        for ok in ["0312345678", "0612345678", "09012345678", "08012345678", "07012345678", "0120123456", "08001234567", "05012345678", "0570123456"] {
            assert!(is_valid_national(ok), "{ok}");
        }
        for bad in ["031234567", "031234567890", "0901234567", "0120123456789", "0012345678", "01012345678", "1234567890", "03-1234-5678", ""] {
            assert!(!is_valid_national(bad), "{bad}");
        }
        assert_eq!(national("+81312345678"), "0312345678");
        assert_eq!(national("0312345678"), "0312345678");
    }
}
