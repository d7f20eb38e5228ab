//! Multi-level voice menus (IVR): the menu as data (`IvrMenu`, what the
//! store, the API and the command line edit), the checks a menu must pass
//! before it is saved, and `IvrRun`, the pure state machine one call runs
//! through the menus.
//!
//! `IvrRun` does no I/O and reads no clock: the call task feeds it what
//! happened (`IvrInput`, with the time since the call entered the IVR) and
//! carries out what it answers (`IvrStep`: play, arm the one timer, load a
//! menu from the store, route the call, hang up). The run holds only the
//! names of the menus above the current one; every entry loads the menu
//! afresh, so a change saved while a caller is in the menus is heard at the
//! next menu they enter.
//!
//! Keys: a single-key option acts at once unless a longer option, or an
//! extension with direct dial, could still begin with the keys pressed; then
//! the run waits `inter_digit` for more, and `#` ends the entry at once.
//! `*` goes back to the menu above when no option uses `*` (on the top menu
//! it plays the menu again): callers in Japan know `*` as "back" from
//! carriers' voice menus, and a menu that wants `*` for something else can
//! still give it an option.

use crate::store::{check_media_name, Dest, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Menus in a call's stack at most (the top menu counts): deeper nesting is
/// a maze, and the bound keeps a live change that made a loop harmless.
pub const MAX_DEPTH: usize = 8;
/// How long one call may stay in the menus before it is hung up: a caller
/// (or a fax machine, or a robot) going round forever would hold a line.
pub const CALL_LIMIT: Duration = Duration::from_secs(600);
/// The announcements played by default on a wrong key and on silence.
pub const DEFAULT_INVALID_PROMPT: &str = "ivr-invalid";
pub const DEFAULT_TIMEOUT_PROMPT: &str = "ivr-timeout";
/// Allowed times and repeat counts (what the store checks).
pub const FIRST_DIGIT_MS: RangeInclusive<u64> = 1_000..=60_000;
pub const INTER_DIGIT_MS: RangeInclusive<u64> = 500..=10_000;
pub const MAX_REPEATS: RangeInclusive<u32> = 1..=10;
/// The longest extension number (as `validate_extension` allows).
const MAX_EXTENSION_DIGITS: usize = 16;

/// What a key (or a failure) does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IvrAction {
    /// Leave the menus for a destination; `ivr:SUB` enters a sub-menu
    /// instead (and `back` there returns here).
    Go(Dest),
    /// The menu above (on the top menu: play this one again).
    Back,
    /// Play this menu's prompt again (not counted as a failure).
    Repeat,
    Hangup,
}

impl IvrAction {
    /// `back`, `repeat`, `hangup`, or a destination as `Dest::parse` reads it.
    pub fn parse(s: &str) -> Result<IvrAction, StoreError> {
        Ok(match s.trim() {
            "back" => IvrAction::Back,
            "repeat" => IvrAction::Repeat,
            "hangup" => IvrAction::Hangup,
            other => IvrAction::Go(Dest::parse(other)?),
        })
    }

    /// The sub-menu this enters, if it enters one.
    pub fn sub_menu(&self) -> Option<&str> {
        match self {
            IvrAction::Go(Dest::Ivr(n)) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for IvrAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IvrAction::Go(d) => write!(f, "{d}"),
            IvrAction::Back => f.write_str("back"),
            IvrAction::Repeat => f.write_str("repeat"),
            IvrAction::Hangup => f.write_str("hangup"),
        }
    }
}

/// One menu, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrMenu {
    /// What `ivr:NAME` names (`check_media_name`).
    pub name: String,
    pub label: String,
    /// An announcement played before the prompt the first time a call
    /// enters this menu ("お電話ありがとうございます…").
    pub greeting: Option<String>,
    /// The announcement that says the choices.
    pub prompt: String,
    /// Played before the prompt again after a key that means nothing here.
    pub invalid_prompt: String,
    /// Played before the prompt again when no key came.
    pub timeout_prompt: String,
    /// How long to wait for the first key once the prompt has played.
    pub first_digit: Duration,
    /// How long to wait for the next key of a longer entry.
    pub inter_digit: Duration,
    /// Failures (wrong keys, silence) answered by playing the menu again;
    /// the next one takes `on_failure`.
    pub max_repeats: u32,
    /// A destination, `back` or `hangup` (never `repeat`: that never ends).
    pub on_failure: IvrAction,
    /// Keys that form an extension number ring that extension.
    pub direct_dial: bool,
    /// Keys (1 to 4 of `0-9*#`) and what they do.
    pub options: BTreeMap<String, IvrAction>,
}

impl IvrMenu {
    /// A menu with the defaults of the database columns.
    pub fn new(name: &str, prompt: &str) -> IvrMenu {
        IvrMenu {
            name: name.to_string(),
            label: String::new(),
            greeting: None,
            prompt: prompt.to_string(),
            invalid_prompt: DEFAULT_INVALID_PROMPT.to_string(),
            timeout_prompt: DEFAULT_TIMEOUT_PROMPT.to_string(),
            first_digit: Duration::from_millis(5_000),
            inter_digit: Duration::from_millis(2_000),
            max_repeats: 3,
            on_failure: IvrAction::Hangup,
            direct_dial: false,
            options: BTreeMap::new(),
        }
    }

    /// The sub-menus this menu can enter (options and the failure branch).
    pub fn sub_menus(&self) -> BTreeSet<String> {
        self.options.values().chain(std::iter::once(&self.on_failure)).filter_map(IvrAction::sub_menu).map(str::to_string).collect()
    }

    /// The announcements this menu plays.
    pub fn announcements(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.greeting.iter().map(String::as_str).collect();
        v.extend([self.prompt.as_str(), self.invalid_prompt.as_str(), self.timeout_prompt.as_str()]);
        v
    }

    /// The checks of this menu on its own (names, keys, times); how it
    /// links with other menus is `check_links`.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(m));
        check_media_name("IVR menu", &self.name)?;
        if self.label.chars().count() > 100 || self.label.chars().any(char::is_control) {
            return bad("the label has at most 100 characters, no control characters".into());
        }
        let prompts = [("greeting", self.greeting.as_deref()), ("prompt", Some(&*self.prompt)), ("invalid_prompt", Some(&*self.invalid_prompt)), ("timeout_prompt", Some(&*self.timeout_prompt))];
        for (field, name) in prompts {
            if let Some(n) = name {
                check_media_name("announcement", n).map_err(|e| StoreError::Invalid(format!("{field}: {}", e.detail())))?;
            }
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if !FIRST_DIGIT_MS.contains(&ms(self.first_digit)) {
            return bad(format!("first_digit_ms {}: {} to {} ms", ms(self.first_digit), FIRST_DIGIT_MS.start(), FIRST_DIGIT_MS.end()));
        }
        if !INTER_DIGIT_MS.contains(&ms(self.inter_digit)) {
            return bad(format!("inter_digit_ms {}: {} to {} ms", ms(self.inter_digit), INTER_DIGIT_MS.start(), INTER_DIGIT_MS.end()));
        }
        if !MAX_REPEATS.contains(&self.max_repeats) {
            return bad(format!("max_repeats {}: {} to {}", self.max_repeats, MAX_REPEATS.start(), MAX_REPEATS.end()));
        }
        if self.on_failure == IvrAction::Repeat {
            return bad("on_failure cannot be repeat (the menu would never end); use hangup, back or a destination".into());
        }
        if self.options.is_empty() && !self.direct_dial {
            return bad(format!("IVR menu {} has no options and no direct dial: no key could do anything", self.name));
        }
        for key in self.options.keys() {
            check_keys(key)?;
        }
        Ok(())
    }
}

/// Keys of an option: 1 to 4 of `0-9 * #`.
pub fn check_keys(keys: &str) -> Result<(), StoreError> {
    if (1..=4).contains(&keys.len()) && keys.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("option keys {keys:?}: 1 to 4 of 0-9, * and #")))
    }
}

/// What is wrong with how a menu links to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// Sub-menus that lead back to where they started (first = last).
    Loop(Vec<String>),
    /// An option (or on_failure) enters a menu that does not exist.
    Missing { field: String, menu: String },
    /// A chain of sub-menus longer than `MAX_DEPTH`.
    TooDeep(Vec<String>),
}

impl LinkProblem {
    pub fn message(&self) -> String {
        match self {
            LinkProblem::Loop(c) if c.len() == 2 => {
                format!("IVR menu {} loops to itself through ivr:{}; use `repeat` to play the menu again", c[0], c[0])
            }
            LinkProblem::Loop(c) => {
                format!("IVR menus loop: {} (a sub-menu cannot lead back to a menu above it; use `back` to go up)", c.join(" → "))
            }
            LinkProblem::Missing { field, menu } => format!("{field}: no IVR menu {menu} (save the sub-menu first)"),
            LinkProblem::TooDeep(c) => format!("sub-menus nest {} deep ({}); at most {MAX_DEPTH}", c.len(), c.join(" → ")),
        }
    }
}

/// Check `menu` against the other menus' links (`others`: each stored
/// menu's name and the sub-menus it enters; `menu`'s own stored entry, if
/// any, is replaced by `menu`): every sub-menu exists, no chain of
/// sub-menus leads back to a menu in it, none is deeper than `MAX_DEPTH`.
pub fn check_links(menu: &IvrMenu, others: &BTreeMap<String, BTreeSet<String>>) -> Result<(), LinkProblem> {
    let mut graph = others.clone();
    graph.insert(menu.name.clone(), menu.sub_menus());
    // Missing sub-menus first, named by the field that points there.
    let fields = menu.options.iter().map(|(k, a)| (format!("option {k}"), a)).chain(std::iter::once(("on_failure".to_string(), &menu.on_failure)));
    for (field, action) in fields {
        if let Some(sub) = action.sub_menu() {
            if !graph.contains_key(sub) {
                return Err(LinkProblem::Missing { field, menu: sub.to_string() });
            }
        }
    }
    if let Some(cycle) = find_loop(&graph, &menu.name) {
        return Err(LinkProblem::Loop(cycle));
    }
    let chain = deepest_chain(&graph);
    if chain.len() > MAX_DEPTH {
        return Err(LinkProblem::TooDeep(chain));
    }
    Ok(())
}

/// A loop reachable from `start`, as the names along it (first = last).
pub fn find_loop(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    // Iterative depth-first search (no recursion on admin data): `path` is
    // the current chain, `done` the menus fully explored without a loop.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut path: Vec<&str> = vec![start];
    let mut iters: Vec<std::collections::btree_set::Iter<'_, String>> = Vec::new();
    let empty = BTreeSet::new();
    iters.push(graph.get(start).unwrap_or(&empty).iter());
    while let Some(it) = iters.last_mut() {
        match it.next() {
            Some(next) => {
                if let Some(i) = path.iter().position(|p| *p == next.as_str()) {
                    let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                if !done.contains(next.as_str()) {
                    path.push(next);
                    iters.push(graph.get(next).unwrap_or(&empty).iter());
                }
            }
            None => {
                iters.pop();
                if let Some(p) = path.pop() {
                    done.insert(p);
                }
            }
        }
    }
    None
}

/// The longest chain of sub-menus in a loop-free graph (menu names, top
/// first). A graph with a loop gives some chain, never hangs.
pub fn deepest_chain(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Longest chain starting at each menu, filled bottom-up; a bound on the
    // rounds keeps a graph with a loop from running forever.
    let mut best: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for _ in 0..=graph.len() {
        let mut changed = false;
        for (name, subs) in graph {
            let mut chain = vec![name.clone()];
            if let Some(longest) = subs.iter().filter_map(|s| best.get(s.as_str())).max_by_key(|c| c.len()) {
                chain.extend(longest.iter().cloned());
            }
            if best.get(name.as_str()).is_none_or(|c| c.len() < chain.len()) && chain.len() <= graph.len() + 1 {
                best.insert(name, chain);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    best.into_values().max_by_key(Vec::len).unwrap_or_default()
}

/// What happened, as the call task tells the run. (`Entered` is large
/// beside the others; inputs are moved once, never stored, so it is not
/// boxed.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrInput {
    /// The prompts of the last `Play` have finished (feed it only for the
    /// latest `Play`: one that was replaced or stopped does not count).
    Played,
    /// A key: `0-9`, `*`, `#` (anything else is ignored).
    Digit(char),
    /// The timer of the last `Arm` fired.
    Timeout,
    /// The menu the last `Load` asked for, read from the store just now.
    Entered(IvrMenu),
    /// The menu the last `Load` asked for does not exist (any more).
    EnterFailed,
    /// The extension of the last `DialExtension` does not exist: counted
    /// as a wrong key.
    NoSuchExtension,
}

/// What the call task does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrStep {
    /// Play these announcements in order, replacing whatever plays now.
    Play(Vec<String>),
    /// Stop playing (a key pressed during a prompt).
    StopPlaying,
    /// Start the one timer (replacing a running one); feed `Timeout`.
    Arm(Duration),
    /// Stop the timer.
    Disarm,
    /// Read this menu from the store; feed `Entered` or `EnterFailed`.
    Load(String),
    /// Leave the menus for this destination (never `Dest::Ivr`).
    Route(Dest),
    /// The caller keyed this extension: route to `Dest::User` if it
    /// exists (the run is over), else feed `NoSuchExtension`.
    DialExtension(String),
    /// End the call.
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A prompt plays; no timer.
    Prompting,
    /// The prompt has played; the first-key timer runs.
    Waiting,
    /// Some keys came; the inter-key timer runs.
    Collecting,
    /// A `Load` is out.
    Loading,
    /// A `DialExtension` is out.
    Dialing,
    /// Routed or hung up: nothing more.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Push(String),
    Pop,
}

/// One call's way through the menus.
#[derive(Debug, Clone)]
pub struct IvrRun {
    /// Names of the menus entered, top first; the last is `menu`'s.
    stack: Vec<String>,
    menu: IvrMenu,
    phase: Phase,
    digits: String,
    /// Failures in this menu since it was entered.
    failures: u32,
    /// Menus whose greeting this call has heard.
    greeted: BTreeSet<String>,
    pending: Option<Pending>,
    /// The pending load is the failure branch: if it fails too, hang up
    /// (a failure branch that fails must not go round).
    failing: bool,
    armed: bool,
    /// Time since the run began, as of the input being handled.
    now: Duration,
}

impl IvrRun {
    /// Start on `root` (the menu `ivr:NAME` named, loaded by the caller):
    /// the greeting and prompt play.
    pub fn new(root: IvrMenu) -> (IvrRun, Vec<IvrStep>) {
        let mut run = IvrRun {
            stack: vec![root.name.clone()],
            menu: root,
            phase: Phase::Loading,
            digits: String::new(),
            failures: 0,
            greeted: BTreeSet::new(),
            pending: None,
            failing: false,
            armed: false,
            now: Duration::ZERO,
        };
        let mut out = Vec::new();
        run.enter(&mut out);
        (run, out)
    }

    /// The menu the caller is in.
    pub fn menu(&self) -> &IvrMenu {
        &self.menu
    }

    /// Names of the menus entered, top first.
    pub fn stack(&self) -> &[String] {
        &self.stack
    }

    /// Routed or hung up: the call task can drop the run.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Handle one input; `at` is the time since the run began (the call
    /// task's monotonic clock), for the `CALL_LIMIT`.
    pub fn on(&mut self, at: Duration, input: IvrInput) -> Vec<IvrStep> {
        let mut out = Vec::new();
        if self.phase == Phase::Done {
            return out;
        }
        self.now = at;
        if at >= CALL_LIMIT {
            self.hangup(&mut out);
            return out;
        }
        match input {
            IvrInput::Played => {
                if self.phase == Phase::Prompting {
                    self.phase = Phase::Waiting;
                    self.arm(self.menu.first_digit, &mut out);
                }
            }
            IvrInput::Digit(c) => {
                if !(c.is_ascii_digit() || c == '*' || c == '#') {
                    return out;
                }
                match self.phase {
                    Phase::Prompting => out.push(IvrStep::StopPlaying),
                    Phase::Waiting | Phase::Collecting => {}
                    // Keys while a menu loads or an extension is looked up
                    // are dropped: they were meant for what comes next.
                    Phase::Loading | Phase::Dialing | Phase::Done => return out,
                }
                self.key(c, &mut out);
            }
            IvrInput::Timeout => {
                if !self.armed {
                    return out; // a stale timer
                }
                self.armed = false;
                match self.phase {
                    Phase::Waiting => {
                        let p = self.menu.timeout_prompt.clone();
                        self.failure(p, &mut out)
                    }
                    Phase::Collecting => self.finish_entry(&mut out),
                    _ => {}
                }
            }
            IvrInput::Entered(menu) => {
                if self.phase != Phase::Loading {
                    return out;
                }
                let expected = match &self.pending {
                    Some(Pending::Push(n)) => n.clone(),
                    Some(Pending::Pop) if self.stack.len() >= 2 => self.stack[self.stack.len() - 2].clone(),
                    _ => return out,
                };
                if menu.name != expected {
                    return out; // not what was asked for
                }
                match self.pending.take() {
                    Some(Pending::Push(n)) => self.stack.push(n),
                    _ => {
                        self.stack.pop();
                    }
                }
                self.menu = menu;
                self.enter(&mut out);
            }
            IvrInput::EnterFailed => {
                if self.phase != Phase::Loading {
                    return out;
                }
                self.pending = None;
                if self.failing {
                    self.hangup(&mut out);
                } else {
                    // The menu this one leads to has gone: this menu's
                    // failure branch, as if the caller had failed here.
                    self.fail(&mut out);
                }
            }
            IvrInput::NoSuchExtension => {
                if self.phase == Phase::Dialing {
                    self.invalid(&mut out);
                }
            }
        }
        out
    }

    fn enter(&mut self, out: &mut Vec<IvrStep>) {
        self.digits.clear();
        self.failures = 0;
        self.failing = false;
        let mut items = Vec::new();
        if self.greeted.insert(self.menu.name.clone()) {
            items.extend(self.menu.greeting.iter().cloned());
        }
        items.push(self.menu.prompt.clone());
        self.play(items, out);
    }

    fn play(&mut self, items: Vec<String>, out: &mut Vec<IvrStep>) {
        self.disarm(out);
        self.digits.clear();
        self.phase = Phase::Prompting;
        out.push(IvrStep::Play(items));
    }

    fn arm(&mut self, d: Duration, out: &mut Vec<IvrStep>) {
        // Never past the call limit: the timer then ends the run.
        let left = CALL_LIMIT.saturating_sub(self.now);
        self.armed = true;
        out.push(IvrStep::Arm(d.min(left)));
    }

    fn disarm(&mut self, out: &mut Vec<IvrStep>) {
        if self.armed {
            self.armed = false;
            out.push(IvrStep::Disarm);
        }
    }

    fn key(&mut self, c: char, out: &mut Vec<IvrStep>) {
        let mut candidate = self.digits.clone();
        candidate.push(c);
        let opts = &self.menu.options;
        let some_option_begins = opts.keys().any(|k| k.starts_with(&candidate));
        if !some_option_begins {
            if c == '#' {
                // `#` ends the entry (with nothing keyed: a wrong key).
                return if self.digits.is_empty() { self.invalid(out) } else { self.finish_entry(out) };
            }
            if c == '*' && self.digits.is_empty() {
                return self.act(IvrAction::Back, out);
            }
        }
        self.digits = candidate;
        let longer = opts.keys().any(|k| k.len() > self.digits.len() && k.starts_with(&self.digits));
        let extension_may_grow = self.menu.direct_dial && self.digits.len() < MAX_EXTENSION_DIGITS && self.digits.bytes().all(|b| b.is_ascii_digit());
        if longer || extension_may_grow {
            self.phase = Phase::Collecting;
            self.arm(self.menu.inter_digit, out);
        } else {
            self.finish_entry(out);
        }
    }

    /// The entry is complete (`#`, the inter-key timer, or no longer
    /// entry possible): an option, else an extension, else a wrong key.
    fn finish_entry(&mut self, out: &mut Vec<IvrStep>) {
        let digits = std::mem::take(&mut self.digits);
        if let Some(a) = self.menu.options.get(&digits).cloned() {
            return self.act(a, out);
        }
        if self.menu.direct_dial && crate::store::validate_extension(&digits).is_ok() {
            self.disarm(out);
            self.phase = Phase::Dialing;
            out.push(IvrStep::DialExtension(digits));
            return;
        }
        self.invalid(out);
    }

    fn act(&mut self, a: IvrAction, out: &mut Vec<IvrStep>) {
        match a {
            IvrAction::Go(Dest::Ivr(n)) => {
                if self.stack.len() >= MAX_DEPTH {
                    // Only a live change can nest this deep (saving checks
                    // it): the key leads nowhere, as a wrong key.
                    self.invalid(out);
                } else {
                    self.load(Pending::Push(n), false, out);
                }
            }
            IvrAction::Go(d) => self.route(d, out),
            IvrAction::Back if self.stack.len() > 1 => self.load(Pending::Pop, false, out),
            IvrAction::Back | IvrAction::Repeat => {
                let p = self.menu.prompt.clone();
                self.play(vec![p], out);
            }
            IvrAction::Hangup => self.hangup(out),
        }
    }

    /// A wrong key (or a keyed extension that does not exist).
    fn invalid(&mut self, out: &mut Vec<IvrStep>) {
        let p = self.menu.invalid_prompt.clone();
        self.failure(p, out);
    }

    /// A failure in this menu: the menu again after `notice`, or past
    /// `max_repeats`, the failure branch.
    fn failure(&mut self, notice: String, out: &mut Vec<IvrStep>) {
        self.failures += 1;
        if self.failures > self.menu.max_repeats {
            self.fail(out);
        } else {
            let p = self.menu.prompt.clone();
            self.play(vec![notice, p], out);
        }
    }

    /// This menu's `on_failure`.
    fn fail(&mut self, out: &mut Vec<IvrStep>) {
        self.digits.clear();
        match self.menu.on_failure.clone() {
            IvrAction::Go(Dest::Ivr(n)) if self.stack.len() < MAX_DEPTH => self.load(Pending::Push(n), true, out),
            IvrAction::Go(Dest::Ivr(_)) => self.hangup(out),
            IvrAction::Go(d) => self.route(d, out),
            IvrAction::Back if self.stack.len() > 1 => self.load(Pending::Pop, true, out),
            IvrAction::Back | IvrAction::Repeat | IvrAction::Hangup => self.hangup(out),
        }
    }

    fn load(&mut self, p: Pending, failing: bool, out: &mut Vec<IvrStep>) {
        self.disarm(out);
        let name = match &p {
            Pending::Push(n) => n.clone(),
            Pending::Pop => self.stack[self.stack.len().saturating_sub(2)].clone(),
        };
        self.pending = Some(p);
        self.failing = failing;
        self.phase = Phase::Loading;
        out.push(IvrStep::Load(name));
    }

    fn route(&mut self, d: Dest, out: &mut Vec<IvrStep>) {
        self.disarm(out);
        self.phase = Phase::Done;
        out.push(IvrStep::Route(d));
    }

    fn hangup(&mut self, out: &mut Vec<IvrStep>) {
        self.disarm(out);
        self.phase = Phase::Done;
        out.push(IvrStep::Hangup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IvrInput::*;
    use IvrStep::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn menu(name: &str, opts: &[(&str, &str)]) -> IvrMenu {
        let mut m = IvrMenu::new(name, &format!("{name}-prompt"));
        for (k, a) in opts {
            m.options.insert(k.to_string(), IvrAction::parse(a).unwrap());
        }
        m
    }

    fn root() -> IvrMenu {
        let mut m = menu("main", &[("1", "group:3000"), ("2", "ivr:sub"), ("0", "repeat"), ("9", "hangup")]);
        m.greeting = Some("welcome".into());
        m.on_failure = IvrAction::parse("user:2999").unwrap();
        m
    }

    /// A run on `m` whose prompt has played (the first-key timer runs).
    fn waiting(m: IvrMenu) -> IvrRun {
        let (mut run, _) = IvrRun::new(m.clone());
        assert_eq!(run.on(ms(0), Played), vec![Arm(m.first_digit)]);
        run
    }

    #[test]
    fn actions_parse_and_print_back() {
        for text in ["user:1001", "group:3000", "ivr:sub", "announcement:closed", "schedule:main", "number:0312345678", "back", "repeat", "hangup"] {
            assert_eq!(IvrAction::parse(text).unwrap().to_string(), text);
        }
        assert!(IvrAction::parse("nonsense:1").is_err());
        assert_eq!(IvrAction::parse("ivr:sub").unwrap().sub_menu(), Some("sub"));
    }

    #[test]
    fn entering_plays_greeting_and_prompt_then_waits_for_a_key() {
        let (mut run, steps) = IvrRun::new(root());
        assert_eq!(steps, vec![Play(s(&["welcome", "main-prompt"]))]);
        assert_eq!(run.on(ms(3000), Played), vec![Arm(ms(5000))]);
        assert_eq!(run.on(ms(4000), Digit('1')), vec![Disarm, Route(Dest::Group("3000".into()))]);
        assert!(run.is_done());
        assert_eq!(run.on(ms(4100), Digit('1')), vec![], "nothing after the run is over");
    }

    #[test]
    fn a_key_during_the_prompt_stops_it() {
        let (mut run, _) = IvrRun::new(root());
        assert_eq!(run.on(ms(500), Digit('1')), vec![StopPlaying, Route(Dest::Group("3000".into()))]);
    }

    #[test]
    fn a_wrong_key_plays_the_invalid_prompt_and_the_menu_again() {
        let mut run = waiting(root());
        assert_eq!(run.on(ms(1), Digit('5')), vec![Disarm, Play(s(&["ivr-invalid", "main-prompt"]))]);
        assert_eq!(run.on(ms(2), Played), vec![Arm(ms(5000))]);
        // `#` alone and unknown characters.
        assert_eq!(run.on(ms(3), Digit('#')), vec![Disarm, Play(s(&["ivr-invalid", "main-prompt"]))]);
        assert_eq!(run.on(ms(4), Digit('x')), vec![]);
    }

    #[test]
    fn silence_plays_the_timeout_prompt_and_the_menu_again() {
        let mut run = waiting(root());
        assert_eq!(run.on(ms(5000), Timeout), vec![Play(s(&["ivr-timeout", "main-prompt"]))]);
        assert_eq!(run.on(ms(6000), Timeout), vec![], "no timer runs while the prompt plays");
        assert_eq!(run.on(ms(7000), Played), vec![Arm(ms(5000))]);
    }

    #[test]
    fn past_max_repeats_the_failure_branch_is_taken() {
        let mut m = root();
        m.max_repeats = 2;
        let mut run = waiting(m);
        assert_eq!(run.on(ms(1), Timeout), vec![Play(s(&["ivr-timeout", "main-prompt"]))]);
        run.on(ms(2), Played);
        assert_eq!(run.on(ms(3), Digit('7')), vec![Disarm, Play(s(&["ivr-invalid", "main-prompt"]))], "wrong keys and silence count together");
        run.on(ms(4), Played);
        assert_eq!(run.on(ms(5), Timeout), vec![Route(Dest::User("2999".into()))]);
        assert!(run.is_done());
        // With hang-up as the failure branch.
        let mut m = menu("m", &[("1", "user:1001")]);
        m.max_repeats = 1;
        let mut run = waiting(m);
        run.on(ms(1), Timeout);
        run.on(ms(2), Played);
        assert_eq!(run.on(ms(3), Timeout), vec![Hangup]);
    }

    #[test]
    fn repeat_plays_the_prompt_without_counting_a_failure() {
        let mut m = root();
        m.max_repeats = 1;
        let mut run = waiting(m);
        for i in 0..5 {
            assert_eq!(run.on(ms(i * 10), Digit('0')), vec![Disarm, Play(s(&["main-prompt"]))], "no greeting again");
            run.on(ms(i * 10 + 1), Played);
        }
        assert_eq!(run.on(ms(100), Timeout), vec![Play(s(&["ivr-timeout", "main-prompt"]))], "still the first failure");
    }

    #[test]
    fn sub_menus_two_levels_deep_and_back_up() {
        let mut sub = menu("sub", &[("1", "user:1001"), ("2", "ivr:deeper"), ("9", "back")]);
        sub.greeting = Some("sub-hello".into());
        let deeper = menu("deeper", &[("1", "user:1002"), ("9", "back")]);
        let mut run = waiting(root());
        assert_eq!(run.on(ms(1), Digit('2')), vec![Disarm, Load("sub".into())]);
        assert_eq!(run.on(ms(2), Digit('1')), vec![], "keys while loading are dropped");
        assert_eq!(run.on(ms(3), Entered(menu("other", &[("1", "back")]))), vec![], "not the menu asked for");
        assert_eq!(run.on(ms(3), Entered(sub.clone())), vec![Play(s(&["sub-hello", "sub-prompt"]))]);
        run.on(ms(4), Played);
        assert_eq!(run.on(ms(5), Digit('2')), vec![Disarm, Load("deeper".into())]);
        run.on(ms(6), Entered(deeper.clone()));
        assert_eq!(run.stack(), ["main", "sub", "deeper"]);
        run.on(ms(7), Played);
        assert_eq!(run.on(ms(8), Digit('9')), vec![Disarm, Load("sub".into())]);
        assert_eq!(run.on(ms(9), Entered(sub.clone())), vec![Play(s(&["sub-prompt"]))], "the greeting only on the first entry");
        // `*` is back where no option uses it.
        assert_eq!(run.on(ms(10), Digit('*')), vec![StopPlaying, Load("main".into())]);
        assert_eq!(run.on(ms(11), Entered(root())), vec![Play(s(&["main-prompt"]))]);
        assert_eq!(run.stack(), ["main"]);
        // Back on the top menu plays it again.
        assert_eq!(run.on(ms(12), Digit('*')), vec![StopPlaying, Play(s(&["main-prompt"]))]);
        // Down again and out through the sub-menu.
        run.on(ms(13), Digit('2'));
        run.on(ms(14), Entered(sub));
        assert_eq!(run.on(ms(15), Digit('1')), vec![StopPlaying, Route(Dest::User("1001".into()))]);
    }

    #[test]
    fn an_option_may_use_star_itself() {
        let mut run = waiting(menu("m", &[("*", "user:1001"), ("1", "hangup")]));
        assert_eq!(run.on(ms(1), Digit('*')), vec![Disarm, Route(Dest::User("1001".into()))]);
    }

    #[test]
    fn longer_options_wait_for_more_keys() {
        let mut run = waiting(menu("m", &[("1", "user:1001"), ("12", "user:1012"), ("3#", "user:1003")]));
        assert_eq!(run.on(ms(1), Digit('1')), vec![Arm(ms(2000))]);
        assert_eq!(run.on(ms(2), Digit('2')), vec![Disarm, Route(Dest::User("1012".into()))]);
        let mut run = waiting(menu("m", &[("1", "user:1001"), ("12", "user:1012")]));
        run.on(ms(1), Digit('1'));
        assert_eq!(run.on(ms(2001), Timeout), vec![Route(Dest::User("1001".into()))]);
        let mut run = waiting(menu("m", &[("1", "user:1001"), ("12", "user:1012")]));
        run.on(ms(1), Digit('1'));
        assert_eq!(run.on(ms(2), Digit('#')), vec![Disarm, Route(Dest::User("1001".into()))], "# ends the entry");
        // `#` as part of an option.
        let mut run = waiting(menu("m", &[("1", "user:1001"), ("3#", "user:1003")]));
        assert_eq!(run.on(ms(1), Digit('3')), vec![Arm(ms(2000))]);
        assert_eq!(run.on(ms(2), Digit('#')), vec![Disarm, Route(Dest::User("1003".into()))]);
    }

    #[test]
    fn direct_dial_waits_between_keys_and_ends_on_hash() {
        let mut m = menu("m", &[("1", "group:3000")]);
        m.direct_dial = true;
        // 1 could begin an extension: wait, then take option 1.
        let mut run = waiting(m.clone());
        assert_eq!(run.on(ms(1), Digit('1')), vec![Arm(ms(2000))]);
        assert_eq!(run.on(ms(2001), Timeout), vec![Route(Dest::Group("3000".into()))]);
        // An extension, ended by the inter-key timer.
        let mut run = waiting(m.clone());
        for (i, d) in "1002".chars().enumerate() {
            assert_eq!(run.on(ms(i as u64), Digit(d)), vec![Arm(ms(2000))]);
        }
        assert_eq!(run.on(ms(2100), Timeout), vec![DialExtension("1002".into())]);
        // The extension does not exist: a wrong key.
        assert_eq!(run.on(ms(2200), NoSuchExtension), vec![Play(s(&["ivr-invalid", "m-prompt"]))]);
        // Ended by `#`, keyed during the prompt.
        let (mut run, _) = IvrRun::new(m.clone());
        assert_eq!(run.on(ms(1), Digit('2')), vec![StopPlaying, Arm(ms(2000))]);
        run.on(ms(2), Digit('0'));
        run.on(ms(3), Digit('0'));
        run.on(ms(4), Digit('1'));
        assert_eq!(run.on(ms(5), Digit('#')), vec![Disarm, DialExtension("2001".into())]);
        // One key that is neither an option nor an extension.
        let mut run = waiting(m);
        run.on(ms(1), Digit('5'));
        assert_eq!(run.on(ms(2001), Timeout), vec![Play(s(&["ivr-invalid", "m-prompt"]))]);
    }

    #[test]
    fn a_menu_that_vanished_takes_the_failure_branch() {
        let mut run = waiting(root());
        assert_eq!(run.on(ms(1), Digit('2')), vec![Disarm, Load("sub".into())]);
        assert_eq!(run.on(ms(2), EnterFailed), vec![Route(Dest::User("2999".into()))]);
        // A failure branch into a menu that vanished too: hang up.
        let mut m = root();
        m.on_failure = IvrAction::parse("ivr:help").unwrap();
        let mut run = waiting(m);
        run.on(ms(1), Digit('2'));
        assert_eq!(run.on(ms(2), EnterFailed), vec![Load("help".into())]);
        assert_eq!(run.on(ms(3), EnterFailed), vec![Hangup]);
        // A failure branch into a menu that exists enters it.
        let mut m = root();
        m.on_failure = IvrAction::parse("ivr:help").unwrap();
        m.max_repeats = 1;
        let mut run = waiting(m);
        run.on(ms(1), Timeout);
        run.on(ms(2), Played);
        assert_eq!(run.on(ms(3), Timeout), vec![Load("help".into())]);
        assert_eq!(run.on(ms(4), Entered(menu("help", &[("1", "user:1001")]))), vec![Play(s(&["help-prompt"]))]);
        assert_eq!(run.stack(), ["main", "help"]);
    }

    #[test]
    fn back_as_the_failure_branch() {
        let mut sub = menu("sub", &[("1", "user:1001")]);
        sub.on_failure = IvrAction::Back;
        sub.max_repeats = 1;
        let mut run = waiting(root());
        run.on(ms(1), Digit('2'));
        run.on(ms(2), Entered(sub));
        run.on(ms(3), Played);
        run.on(ms(4), Timeout);
        run.on(ms(5), Played);
        assert_eq!(run.on(ms(6), Timeout), vec![Load("main".into())]);
        assert_eq!(run.on(ms(7), Entered(root())), vec![Play(s(&["main-prompt"]))]);
        // On the top menu, back as the failure branch hangs up.
        let mut m = menu("m", &[("1", "user:1001")]);
        m.on_failure = IvrAction::Back;
        m.max_repeats = 1;
        let mut run = waiting(m);
        run.on(ms(1), Timeout);
        run.on(ms(2), Played);
        assert_eq!(run.on(ms(3), Timeout), vec![Hangup]);
    }

    #[test]
    fn ten_minutes_in_the_menus_hang_up() {
        let mut run = waiting(menu("m", &[("0", "repeat"), ("1", "user:1001")]));
        run.on(ms(1), Digit('0'));
        assert_eq!(run.on(CALL_LIMIT - ms(1000), Played), vec![Arm(ms(1000))], "the timer never runs past the limit");
        assert_eq!(run.on(CALL_LIMIT, Timeout), vec![Disarm, Hangup]);
        assert!(run.is_done());
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_a_wrong_key() {
        // Only a live change can do this; the run stays bounded.
        let looping = menu("m", &[("1", "ivr:m")]);
        let mut run = waiting(looping.clone());
        for i in 1..MAX_DEPTH {
            assert_eq!(run.on(ms(i as u64), Digit('1')).last(), Some(&Load("m".into())));
            run.on(ms(i as u64), Entered(looping.clone()));
            run.on(ms(i as u64), Played);
        }
        assert_eq!(run.stack().len(), MAX_DEPTH);
        assert_eq!(run.on(ms(100), Digit('1')), vec![Disarm, Play(s(&["ivr-invalid", "m-prompt"]))]);
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges.iter().map(|(n, subs)| (n.to_string(), subs.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn links_are_checked_for_loops_missing_menus_and_depth() {
        let stored = graph(&[("a", &["b"]), ("b", &[]), ("c", &[])]);
        // b → a closes a loop.
        let b = menu("b", &[("1", "ivr:a")]);
        assert_eq!(check_links(&b, &stored), Err(LinkProblem::Loop(s(&["b", "a", "b"]))));
        assert!(LinkProblem::Loop(s(&["b", "a", "b"])).message().contains("b → a → b"));
        // Through the failure branch too.
        let mut b = menu("b", &[("1", "user:1001")]);
        b.on_failure = IvrAction::parse("ivr:a").unwrap();
        assert!(matches!(check_links(&b, &stored), Err(LinkProblem::Loop(_))));
        // Itself.
        let c = menu("c", &[("1", "ivr:c")]);
        let e = check_links(&c, &stored).unwrap_err();
        assert_eq!(e, LinkProblem::Loop(s(&["c", "c"])));
        assert!(e.message().contains("use `repeat`"), "{}", e.message());
        // A missing sub-menu.
        let c = menu("c", &[("1", "ivr:nope")]);
        assert_eq!(check_links(&c, &stored), Err(LinkProblem::Missing { field: "option 1".into(), menu: "nope".into() }));
        // Fine: a tree, and two menus sharing a sub-menu.
        assert_eq!(check_links(&menu("c", &[("1", "ivr:b"), ("2", "ivr:a")]), &stored), Ok(()));
        // Too deep: m1 → m2 → … → m9.
        let names: Vec<String> = (1..=9).map(|i| format!("m{i}")).collect();
        let mut chain = BTreeMap::new();
        for w in names.windows(2) {
            chain.insert(w[1].clone(), BTreeSet::new());
            chain.entry(w[0].clone()).or_insert_with(BTreeSet::new).insert(w[1].clone());
        }
        chain.get_mut("m8").unwrap().clear();
        let m8 = menu("m8", &[("1", "ivr:m9")]);
        match check_links(&m8, &chain) {
            Err(LinkProblem::TooDeep(c)) => assert_eq!(c, names),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn find_loop_does_not_report_shared_sub_menus() {
        let g = graph(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])]);
        assert_eq!(find_loop(&g, "a"), None);
        assert_eq!(deepest_chain(&g).len(), 3);
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]);
        assert_eq!(find_loop(&g, "a"), Some(s(&["b", "c", "b"])));
        assert!(deepest_chain(&g).len() <= 4, "bounded on a loop");
    }

    #[test]
    fn a_menu_is_checked_on_its_own() {
        let ok = root();
        assert!(ok.check().is_ok());
        let bad = |f: &dyn Fn(&mut IvrMenu), what: &str| {
            let mut m = root();
            f(&mut m);
            let e = m.check().unwrap_err().detail();
            assert!(e.contains(what), "{e:?} lacks {what:?}");
        };
        bad(&|m| m.name = "Main!".into(), "IVR menu name");
        bad(&|m| m.prompt = "no good".into(), "prompt: announcement name");
        bad(&|m| m.greeting = Some(String::new()), "greeting");
        bad(&|m| m.first_digit = ms(10), "first_digit_ms 10");
        bad(&|m| m.inter_digit = ms(60_000), "inter_digit_ms");
        bad(&|m| m.max_repeats = 0, "max_repeats 0");
        bad(&|m| m.max_repeats = 11, "max_repeats 11");
        bad(&|m| m.on_failure = IvrAction::Repeat, "never end");
        bad(&|m| m.label = "x".repeat(101), "label");
        bad(
            &|m| {
                m.options.insert("12345".into(), IvrAction::Hangup);
            },
            "option keys \"12345\"",
        );
        bad(
            &|m| {
                m.options.insert("1a".into(), IvrAction::Hangup);
            },
            "option keys",
        );
        bad(&|m| m.options.clear(), "no options");
        let mut m = root();
        m.options.clear();
        m.direct_dial = true;
        assert!(m.check().is_ok(), "direct dial alone is a menu");
    }
}
