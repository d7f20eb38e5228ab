//! The call history the app shows and redials from: one [`CallRecord`] per
//! finished call, kept newest first in a bounded [`History`] that is saved
//! to a file, and the sans-IO [`HistoryRecorder`] that turns an account's
//! events into records.
//!
//! # The file
//!
//! JSON lines, one record per line, oldest first. A line is small and
//! self-contained, so damage stays local: a write cut short by a crash or
//! a full disk costs at most the line it cut, a corrupt or foreign line is
//! skipped and reported in the [`LoadReport`], and every good line around
//! it is kept. Saving writes the whole (bounded) history to a temporary
//! file beside the real one, syncs it and renames it over the old one, so
//! a reader only ever sees the old file or the new one, never half of
//! each. Times are whole unix seconds (what a history screen shows); the
//! talk time is kept to the millisecond.
//!
//! # The recorder
//!
//! [`HistoryRecorder`] is fed what the app already sees: the Call-ID that
//! [`Account::dial`](crate::Account::dial) returned
//! ([`observe_dial`](HistoryRecorder::observe_dial)), the user's hang-up or
//! reject ([`observe_hangup`](HistoryRecorder::observe_hangup)), and every
//! [`AccountEvent`] ([`observe`](HistoryRecorder::observe)), each with the
//! wall-clock time it happened. When a call ends it hands back the
//! finished record for [`History::add`]. It owns no clock and no file, so
//! tests drive it with made-up times.
//!
//! How a call's outcome is decided (the SIP code is the one in
//! [`CallEvent::Ended`]):
//!
//! | the call | outcome |
//! | --- | --- |
//! | connected at some point | [`Outcome::Answered`] |
//! | outgoing, we hung up before the answer, or 487 | [`Outcome::Cancelled`] |
//! | outgoing, any other end before the answer | [`Outcome::Failed`] with the code |
//! | incoming, the caller gave up (487) | [`Outcome::Missed`] |
//! | incoming, we rejected it (the code we sent) | [`Outcome::Rejected`] |
//! | incoming, its media could not start, or 408 | [`Outcome::Failed`] |
//!
//! Nothing here panics on any input: hostile strings are capped, unknown
//! Call-IDs are ignored, the number of calls in progress is bounded.

use crate::account::AccountEvent;
use crate::call::CallEvent;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records a history keeps unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 1_000;
/// The most records a history keeps, whatever it is told: a bad setting
/// must not make the app keep (and rewrite) an unbounded file.
pub const MAX_CAPACITY: usize = 100_000;
/// A line longer than this is not one of ours (a record is a few hundred
/// bytes); it is skipped without being read into memory whole.
const MAX_LINE: usize = 16 * 1024;
/// Strings from the network (Call-ID, the caller's user part) and from the
/// app (the dialled target) are cut to this many characters.
const MAX_FIELD_CHARS: usize = 256;
/// Calls the recorder follows at once. A phone has a handful; a PBX that
/// sends a flood of INVITEs must not grow the recorder without limit.
const MAX_OPEN_CALLS: usize = 32;
/// Bad lines described one by one in a [`LoadReport`]; the rest are only
/// counted.
const MAX_REPORTED_LINES: usize = 10;
/// SIP's "Request Terminated": the answer to a CANCEL.
const REQUEST_TERMINATED: u16 = 487;
/// Timeout: for an incoming call we answered, our 200 was never ACKed.
const REQUEST_TIMEOUT: u16 = 408;

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("call history {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// How a call ended; see the module documentation for how it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Connected, in either direction.
    Answered,
    /// Incoming, never answered: the caller gave up.
    Missed,
    /// Incoming, refused on this phone (busy, decline).
    Rejected,
    /// Outgoing, hung up by us before the answer.
    Cancelled,
    /// Did not connect for another reason: the SIP code (486 busy, 404,
    /// 408 no answer from the PBX, 488 no common codec, ...).
    Failed { code: u16 },
}

/// The other end of a call, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RemoteParty {
    /// What to dial to reach them: the target as dialled (outgoing) or the
    /// user part of the caller's From (incoming). Empty when unknown.
    pub user: String,
    /// Their full SIP or tel URI, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Their display name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl RemoteParty {
    /// A party known only by the user part (or number) to dial.
    pub fn user(user: &str) -> Self {
        RemoteParty { user: cap(user), uri: None, display_name: None }
    }

    /// Privacy-requested callers (RFC 3323) come as `anonymous`; there is
    /// nobody to call back.
    fn is_anonymous(&self) -> bool {
        self.user.trim().is_empty() || self.user.eq_ignore_ascii_case("anonymous")
    }
}

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The call's Call-ID.
    pub id: String,
    pub direction: Direction,
    pub outcome: Outcome,
    pub remote: RemoteParty,
    /// When it was dialled or started ringing here (whole seconds).
    pub started_at: SystemTime,
    /// When it connected (whole seconds), if it did.
    pub answered_at: Option<SystemTime>,
    /// When it ended (whole seconds).
    pub ended_at: SystemTime,
    /// Talk time, answer to end (zero if never answered), to the
    /// millisecond.
    pub duration: Duration,
    /// False for a missed call the user has not looked at yet (see
    /// [`History::mark_seen`]); every other record is seen from the start.
    pub seen: bool,
}

impl CallRecord {
    /// A record, with its times cut to whole seconds as the file keeps them
    /// (so a record reads back equal to what was saved) and the talk time
    /// taken from the exact times first.
    pub fn new(
        id: &str,
        direction: Direction,
        outcome: Outcome,
        remote: RemoteParty,
        started_at: SystemTime,
        answered_at: Option<SystemTime>,
        ended_at: SystemTime,
    ) -> Self {
        let duration = answered_at.map_or(Duration::ZERO, |a| ended_at.duration_since(a).unwrap_or(Duration::ZERO));
        CallRecord {
            id: cap(id),
            direction,
            outcome,
            remote: RemoteParty {
                user: cap(&remote.user),
                uri: remote.uri.as_deref().map(cap),
                display_name: remote.display_name.as_deref().map(cap),
            },
            started_at: whole_seconds(started_at),
            answered_at: answered_at.map(whole_seconds),
            ended_at: whole_seconds(ended_at),
            duration: Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            seen: outcome != Outcome::Missed,
        }
    }

    /// The number to call back, if there is one.
    pub fn redial_target(&self) -> Option<&str> {
        (!self.remote.is_anonymous()).then_some(self.remote.user.as_str())
    }
}

/// `s` cut to [`MAX_FIELD_CHARS`] characters.
fn cap(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD_CHARS) {
        Some((at, _)) => s.get(..at).unwrap_or_default().to_string(),
        None => s.to_string(),
    }
}

/// Seconds since the epoch; times before it (a clock set to 1970 or
/// earlier) count as the epoch.
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    from_unix_seconds(unix_seconds(t)).unwrap_or(UNIX_EPOCH)
}

fn from_unix_seconds(s: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(s))
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
struct Line {
    id: String,
    direction: Direction,
    outcome: Outcome,
    remote: RemoteParty,
    started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answered_at: Option<u64>,
    ended_at: u64,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    seen: bool,
}

impl From<&CallRecord> for Line {
    fn from(r: &CallRecord) -> Self {
        Line {
            id: r.id.clone(),
            direction: r.direction,
            outcome: r.outcome,
            remote: r.remote.clone(),
            started_at: unix_seconds(r.started_at),
            answered_at: r.answered_at.map(unix_seconds),
            ended_at: unix_seconds(r.ended_at),
            duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
            seen: r.seen,
        }
    }
}

impl TryFrom<Line> for CallRecord {
    type Error = &'static str;

    fn try_from(l: Line) -> Result<Self, Self::Error> {
        if l.id.is_empty() {
            return Err("record without a Call-ID");
        }
        let time = |s| from_unix_seconds(s).ok_or("time out of range");
        let answered_at = l.answered_at.map(time).transpose()?;
        Ok(CallRecord {
            // A line written by hand (or by a later version) may be longer
            // than we would have made it; cap it the same way.
            id: cap(&l.id),
            direction: l.direction,
            outcome: l.outcome,
            remote: RemoteParty {
                user: cap(&l.remote.user),
                uri: l.remote.uri.as_deref().map(cap),
                display_name: l.remote.display_name.as_deref().map(cap),
            },
            started_at: time(l.started_at)?,
            answered_at,
            ended_at: time(l.ended_at)?,
            duration: Duration::from_millis(l.duration_ms),
            seen: l.seen,
        })
    }
}

/// A line of the file that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: u64,
    pub reason: String,
}

/// What loading a history file found besides good records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records read and kept.
    pub loaded: usize,
    /// Lines that were not records (corrupt, cut short, too long, foreign).
    pub skipped: usize,
    /// Good records beyond the capacity (the oldest), not kept.
    pub dropped: usize,
    /// The first few skipped lines, with why.
    pub bad_lines: Vec<BadLine>,
}

impl LoadReport {
    /// True when the file held nothing but good records.
    pub fn is_clean(&self) -> bool {
        self.skipped == 0
    }

    fn skip(&mut self, line: u64, reason: String) {
        self.skipped += 1;
        if self.bad_lines.len() < MAX_REPORTED_LINES {
            self.bad_lines.push(BadLine { line, reason });
        }
    }
}

/// The call history: at most `capacity` records, ordered by when the call
/// started, the oldest dropped first; optionally bound to a file.
#[derive(Debug, Clone)]
pub struct History {
    /// Oldest first (by `started_at`, ties in the order added).
    records: VecDeque<CallRecord>,
    capacity: usize,
    path: Option<PathBuf>,
    /// Changed since the last save or load.
    dirty: bool,
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_CAPACITY)
    }
}

impl History {
    /// An empty history held in memory only; `capacity` is kept within
    /// `1..=`[`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Self {
        History { records: VecDeque::new(), capacity: capacity.clamp(1, MAX_CAPACITY), path: None, dirty: false }
    }

    /// The history saved at `path` (empty if there is no file yet), bound
    /// to it so that [`save`](Self::save) writes it back. Bad lines are
    /// skipped and reported; an error means the file could not be read at
    /// all, and then nothing is bound, so a later save cannot overwrite
    /// records that are still on disk.
    pub fn open(path: impl AsRef<Path>, capacity: usize) -> Result<(Self, LoadReport), HistoryError> {
        let path = path.as_ref();
        let mut history = History::new(capacity);
        let report = history.load(path)?;
        history.path = Some(path.to_path_buf());
        // Rewriting a file that had bad lines drops them; until then it is
        // as it was.
        history.dirty = !report.is_clean() || report.dropped > 0;
        Ok((history, report))
    }

    fn load(&mut self, path: &Path) -> Result<LoadReport, HistoryError> {
        let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadReport::default()),
            Err(e) => return Err(io(e)),
        };
        let mut reader = BufReader::new(file);
        let mut report = LoadReport::default();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut read = 0usize;
        loop {
            buf.clear();
            // Read at most one line's worth: a file with no newlines in it
            // must not be read into memory whole.
            let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
                skip_to_newline(&mut reader).map_err(io)?;
                report.skip(line_no, format!("longer than {MAX_LINE} bytes"));
                continue;
            }
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let record = serde_json::from_slice::<Line>(text)
                .map_err(|e| e.to_string())
                .and_then(|line| CallRecord::try_from(line).map_err(str::to_string));
            match record {
                Ok(r) => {
                    read += 1;
                    self.insert(r);
                }
                Err(reason) => report.skip(line_no, reason),
            }
        }
        report.loaded = self.records.len();
        report.dropped = read.saturating_sub(self.records.len());
        self.dirty = false;
        Ok(report)
    }

    /// Writes the history to the file it was opened from, if it changed.
    /// A history made with [`new`](Self::new) has no file: nothing to do.
    pub fn save(&mut self) -> Result<(), HistoryError> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        self.save_to(&path)?;
        self.dirty = false;
        Ok(())
    }

    /// Writes the history to `path`, atomically: the file there is either
    /// the old one or the whole new one.
    pub fn save_to(&self, path: impl AsRef<Path>) -> Result<(), HistoryError> {
        let path = path.as_ref();
        let mut bytes = Vec::with_capacity(self.records.len() * 256);
        for r in &self.records {
            // Serialising these plain types cannot fail; if it ever did,
            // losing that one line beats losing the save.
            if serde_json::to_writer(&mut bytes, &Line::from(r)).is_ok() {
                bytes.push(b'\n');
            }
        }
        write_atomic(path, &bytes).map_err(|source| HistoryError::Io { path: path.to_path_buf(), source })
    }

    /// The file this history is saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// True when there are changes [`save`](Self::save) has not written.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a finished call. A record with the same Call-ID replaces the
    /// old one (a call is in the history once); past the capacity the
    /// oldest record is dropped.
    pub fn add(&mut self, record: CallRecord) {
        self.insert(record);
        self.dirty = true;
    }

    fn insert(&mut self, record: CallRecord) {
        if let Some(i) = self.records.iter().position(|r| r.id == record.id) {
            self.records.remove(i);
        }
        // Calls end in another order than they start (a long call started
        // before a short one); the list is by start, as people read it.
        let at = self.records.partition_point(|r| r.started_at <= record.started_at);
        self.records.insert(at, record);
        while self.records.len() > self.capacity {
            self.records.pop_front();
        }
    }

    /// The records, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &CallRecord> + '_ {
        self.records.iter().rev()
    }

    /// The record of call `id`.
    pub fn get(&self, id: &str) -> Option<&CallRecord> {
        self.records.iter().find(|r| r.id == id)
    }

    /// What to dial to call back (or call again) the other end of call
    /// `id`; `None` for an unknown id or an anonymous caller.
    pub fn redial_target(&self, id: &str) -> Option<&str> {
        self.get(id)?.redial_target()
    }

    /// Removes call `id`; false if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.records.iter().position(|r| r.id == id) {
            Some(i) => {
                self.records.remove(i);
                self.dirty = true;
                true
            }
            None => false,
        }
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        if !self.records.is_empty() {
            self.records.clear();
            self.dirty = true;
        }
    }

    /// Missed calls the user has not seen yet: the badge on the app's
    /// history tab.
    pub fn missed_unseen(&self) -> usize {
        self.records.iter().filter(|r| !r.seen).count()
    }

    /// The user looked at the history: every missed call is seen. Returns
    /// how many were not.
    pub fn mark_seen(&mut self) -> usize {
        let mut n = 0;
        for r in self.records.iter_mut().filter(|r| !r.seen) {
            r.seen = true;
            n += 1;
        }
        if n > 0 {
            self.dirty = true;
        }
        n
    }
}

/// Discards the rest of an overlong line, up to and including its newline.
fn skip_to_newline(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)
}

/// Tells apart temporary files of saves running at once in this process
/// (two histories on one path); the process id tells apart processes.
static SAVE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames
/// it over `path` (atomic on one file system), then syncs the folder so the
/// rename itself survives a power cut. The temporary file is removed if
/// anything fails.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let seq = SAVE_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}.{seq}.tmp", name.to_string_lossy(), std::process::id()));
    if let Err(e) = write_then_rename(&tmp, path, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Best effort: not every platform can open and sync a folder, and the
    // new file is already in place.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Recorder

/// A call in progress, as far as the history cares.
#[derive(Debug, Clone)]
struct OpenCall {
    direction: Direction,
    remote: RemoteParty,
    started_at: SystemTime,
    answered_at: Option<SystemTime>,
    /// The user hung up or rejected it (before the answer, this makes an
    /// outgoing call Cancelled and an incoming one Rejected).
    hung_up: bool,
    media_failed: bool,
}

/// Turns an account's events into [`CallRecord`]s. Sans-IO: every call
/// takes the time it happened, and a finished record is returned for the
/// app to [`History::add`].
#[derive(Debug, Default)]
pub struct HistoryRecorder {
    open: HashMap<String, OpenCall>,
}

impl HistoryRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls in progress.
    pub fn open_calls(&self) -> usize {
        self.open.len()
    }

    /// The app dialled `target` and [`Account::dial`](crate::Account::dial)
    /// (or `dial_with_audio`) returned `call_id`.
    pub fn observe_dial(&mut self, call_id: &str, target: &str, now: SystemTime) {
        let id = cap(call_id);
        if id.is_empty() {
            return;
        }
        match self.open.get_mut(&id) {
            // The call's first events were seen before the dial returned
            // (an app that reads events on another task): fill in what only
            // the dial knows.
            Some(call) => {
                call.remote = RemoteParty::user(target);
                call.started_at = call.started_at.min(now);
            }
            None => self.track(id, OpenCall::new(Direction::Outgoing, RemoteParty::user(target), now)),
        }
    }

    /// The user hung up or rejected call `call_id` (call this with
    /// [`Account::hangup`](crate::Account::hangup) and
    /// [`Account::reject`](crate::Account::reject)). Without it a call we
    /// cancelled is still told apart by its 487, but one whose CANCEL met
    /// trouble would look failed.
    pub fn observe_hangup(&mut self, call_id: &str) {
        if let Some(call) = self.open.get_mut(&cap(call_id)) {
            call.hung_up = true;
        }
    }

    /// An event of the account at `now`. Returns the record of a call that
    /// has just ended.
    pub fn observe(&mut self, event: &AccountEvent, now: SystemTime) -> Option<CallRecord> {
        match event {
            AccountEvent::IncomingCall { call_id, from, .. } => {
                let id = cap(call_id);
                if !id.is_empty() && !self.open.contains_key(&id) {
                    self.track(id, OpenCall::new(Direction::Incoming, RemoteParty::user(from), now));
                }
                None
            }
            AccountEvent::MediaFailed { call_id, .. } => {
                if let Some(call) = self.open.get_mut(&cap(call_id)) {
                    call.media_failed = true;
                }
                None
            }
            AccountEvent::Call { call_id, event } => self.observe_call(&cap(call_id), event, now),
            // Registration, flows, requests the SDK does not handle: not
            // about a call's life.
            _ => None,
        }
    }

    fn observe_call(&mut self, id: &str, event: &CallEvent, now: SystemTime) -> Option<CallRecord> {
        if id.is_empty() {
            return None;
        }
        if let CallEvent::Ended { code, .. } = event {
            let call = self.open.remove(id)?;
            return Some(call.finish(id, Some(*code), now));
        }
        if !self.open.contains_key(id) {
            // An incoming call always starts with IncomingCall, so an
            // unknown call with progress is ours, its dial not yet observed.
            self.track(id.to_string(), OpenCall::new(Direction::Outgoing, RemoteParty::default(), now));
        }
        if let (CallEvent::Connected { .. }, Some(call)) = (event, self.open.get_mut(id)) {
            call.answered_at.get_or_insert(now);
        }
        None
    }

    /// The account stopped (closed, or the app is quitting) with calls
    /// still open: they end now, with the outcome they would have had had
    /// the user hung up (a ringing incoming call is missed).
    pub fn finish_all(&mut self, now: SystemTime) -> Vec<CallRecord> {
        let mut calls: Vec<(String, OpenCall)> = self.open.drain().collect();
        calls.sort_by_key(|(_, c)| c.started_at);
        calls
            .into_iter()
            .map(|(id, mut call)| {
                if call.direction == Direction::Outgoing {
                    call.hung_up = true;
                }
                call.finish(&id, None, now)
            })
            .collect()
    }

    fn track(&mut self, id: String, call: OpenCall) {
        if self.open.len() >= MAX_OPEN_CALLS {
            // Forget the oldest: a real phone never has this many calls, so
            // it is a flood, and the newest calls are the ones that matter.
            if let Some(oldest) = self.open.iter().min_by_key(|(_, c)| c.started_at).map(|(k, _)| k.clone()) {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(id, call);
    }
}

impl OpenCall {
    fn new(direction: Direction, remote: RemoteParty, now: SystemTime) -> Self {
        OpenCall { direction, remote, started_at: now, answered_at: None, hung_up: false, media_failed: false }
    }

    /// The record of this call ending at `now` with `code` (`None`: it did
    /// not end through SIP, the account went away).
    fn finish(self, id: &str, code: Option<u16>, now: SystemTime) -> CallRecord {
        let outcome = match (self.answered_at, self.direction, code) {
            (Some(_), _, _) => Outcome::Answered,
            (None, Direction::Outgoing, _) if self.hung_up => Outcome::Cancelled,
            (None, Direction::Outgoing, Some(REQUEST_TERMINATED)) => Outcome::Cancelled,
            (None, Direction::Outgoing, code) => Outcome::Failed { code: code.unwrap_or(0) },
            (None, Direction::Incoming, code) if self.media_failed => Outcome::Failed { code: code.unwrap_or(0) },
            (None, Direction::Incoming, _) if self.hung_up => Outcome::Rejected,
            (None, Direction::Incoming, None | Some(REQUEST_TERMINATED)) => Outcome::Missed,
            // We answered but the caller's ACK never came.
            (None, Direction::Incoming, Some(REQUEST_TIMEOUT)) => Outcome::Failed { code: REQUEST_TIMEOUT },
            // Any other end of an unanswered incoming call comes from
            // `Call::reject` with the code the app chose.
            (None, Direction::Incoming, Some(_)) => Outcome::Rejected,
        };
        CallRecord::new(id, self.direction, outcome, self.remote, self.started_at, self.answered_at, now.max(self.started_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn call(id: &str, event: CallEvent) -> AccountEvent {
        AccountEvent::Call { call_id: id.to_string(), event }
    }

    fn incoming(id: &str, from: &str) -> AccountEvent {
        AccountEvent::IncomingCall { call_id: id.to_string(), from: from.to_string(), offer: Bytes::new() }
    }

    fn ended(code: u16) -> CallEvent {
        CallEvent::Ended { code, reason: String::new() }
    }

    fn record(id: &str, start: u64, outcome: Outcome) -> CallRecord {
        let answered = (outcome == Outcome::Answered).then(|| t(start + 2));
        CallRecord::new(id, Direction::Outgoing, outcome, RemoteParty::user("1001"), t(start), answered, t(start + 30))
    }

    #[test]
    fn outgoing_answered_call() {
        let mut rec = HistoryRecorder::new();
        rec.observe_dial("a1", "1001", t(0));
        assert_eq!(rec.observe(&call("a1", CallEvent::Ringing), t(1)), None);
        let connected = t(3) + Duration::from_millis(250);
        assert_eq!(rec.observe(&call("a1", CallEvent::Connected { sdp: None }), connected), None);
        // Re-INVITEs in the call change nothing.
        assert_eq!(rec.observe(&call("a1", CallEvent::OfferRefused { code: 491 }), t(10)), None);
        assert_eq!(rec.observe(&call("a1", CallEvent::Connected { sdp: None }), t(20)), None, "a second answer is not the answer");
        let r = rec.observe(&call("a1", ended(200)), t(63)).unwrap();
        assert_eq!(r.id, "a1");
        assert_eq!(r.direction, Direction::Outgoing);
        assert_eq!(r.outcome, Outcome::Answered);
        assert_eq!(r.remote.user, "1001");
        assert_eq!(r.started_at, t(0));
        assert_eq!(r.answered_at, Some(t(3)), "whole seconds");
        assert_eq!(r.ended_at, t(63));
        assert_eq!(r.duration, Duration::from_millis(59_750), "talk time from the exact times");
        assert!(r.seen);
        assert_eq!(rec.open_calls(), 0);
        assert_eq!(rec.observe(&call("a1", ended(200)), t(64)), None, "ended once");
    }

    #[test]
    fn outgoing_failures_and_cancels() {
        let mut rec = HistoryRecorder::new();
        rec.observe_dial("busy", "1002", t(0));
        assert_eq!(rec.observe(&call("busy", ended(486)), t(2)).unwrap().outcome, Outcome::Failed { code: 486 });

        rec.observe_dial("cancel", "1003", t(0));
        rec.observe(&call("cancel", CallEvent::Ringing), t(1));
        rec.observe_hangup("cancel");
        let r = rec.observe(&call("cancel", ended(487)), t(5)).unwrap();
        assert_eq!((r.outcome, r.duration, r.answered_at), (Outcome::Cancelled, Duration::ZERO, None));

        // Our CANCEL lost in the network: still our hang-up.
        rec.observe_dial("lost", "1004", t(0));
        rec.observe_hangup("lost");
        assert_eq!(rec.observe(&call("lost", ended(408)), t(32)).unwrap().outcome, Outcome::Cancelled);

        // A 487 without observe_hangup (an app that does not report it).
        rec.observe_dial("487", "1005", t(0));
        assert_eq!(rec.observe(&call("487", ended(487)), t(3)).unwrap().outcome, Outcome::Cancelled);

        // No answer from the PBX at all.
        rec.observe_dial("dead", "1006", t(0));
        assert_eq!(rec.observe(&call("dead", ended(408)), t(32)).unwrap().outcome, Outcome::Failed { code: 408 });

        // Hanging up after the answer is still an answered call.
        rec.observe_dial("talk", "1007", t(0));
        rec.observe(&call("talk", CallEvent::Connected { sdp: None }), t(1));
        rec.observe_hangup("talk");
        assert_eq!(rec.observe(&call("talk", ended(200)), t(9)).unwrap().outcome, Outcome::Answered);
    }

    #[test]
    fn incoming_outcomes() {
        let mut rec = HistoryRecorder::new();
        // The caller gives up while it rings: missed, and not yet seen.
        rec.observe(&incoming("m", "2001"), t(0));
        let r = rec.observe(&call("m", ended(487)), t(20)).unwrap();
        assert_eq!((r.direction, r.outcome, r.seen), (Direction::Incoming, Outcome::Missed, false));
        assert_eq!(r.redial_target(), Some("2001"));

        // Rejected on this phone: with or without observe_hangup.
        rec.observe(&incoming("r1", "2002"), t(0));
        rec.observe_hangup("r1");
        assert_eq!(rec.observe(&call("r1", ended(603)), t(1)).unwrap().outcome, Outcome::Rejected);
        rec.observe(&incoming("r2", "2002"), t(0));
        assert_eq!(rec.observe(&call("r2", ended(486)), t(1)).unwrap().outcome, Outcome::Rejected);

        // Answered, then the far end hangs up.
        rec.observe(&incoming("a", "2003"), t(0));
        rec.observe(&call("a", CallEvent::Connected { sdp: None }), t(4));
        let r = rec.observe(&call("a", ended(200)), t(100)).unwrap();
        assert_eq!((r.outcome, r.duration), (Outcome::Answered, Duration::from_secs(96)));

        // No common codec: the SDK rejects it with 488.
        rec.observe(&incoming("codec", "2004"), t(0));
        rec.observe(&AccountEvent::MediaFailed { call_id: "codec".into(), reason: "no codec".into() }, t(0));
        assert_eq!(rec.observe(&call("codec", ended(488)), t(0)).unwrap().outcome, Outcome::Failed { code: 488 });

        // We answered but no ACK came.
        rec.observe(&incoming("noack", "2005"), t(0));
        assert_eq!(rec.observe(&call("noack", ended(408)), t(32)).unwrap().outcome, Outcome::Failed { code: 408 });

        // A retransmitted INVITE does not restart the call.
        rec.observe(&incoming("dup", "2006"), t(0));
        rec.observe(&incoming("dup", "someone else"), t(5));
        let r = rec.observe(&call("dup", ended(487)), t(6)).unwrap();
        assert_eq!((r.started_at, r.remote.user.as_str()), (t(0), "2006"));
    }

    #[test]
    fn events_out_of_order_or_unknown() {
        let mut rec = HistoryRecorder::new();
        // Progress before the dial returned to the app.
        rec.observe(&call("early", CallEvent::Ringing), t(1));
        rec.observe(&call("early", CallEvent::Connected { sdp: None }), t(2));
        rec.observe_dial("early", "3001", t(0));
        let r = rec.observe(&call("early", ended(200)), t(12)).unwrap();
        assert_eq!((r.direction, r.outcome, r.remote.user.as_str()), (Direction::Outgoing, Outcome::Answered, "3001"));
        assert_eq!((r.started_at, r.duration), (t(0), Duration::from_secs(10)));

        // The end of a call never seen: nothing to record.
        assert_eq!(rec.observe(&call("ghost", ended(200)), t(1)), None);
        // Events that are not about calls.
        assert_eq!(rec.observe(&AccountEvent::FlowLost { reason: "x".into() }, t(1)), None);
        assert_eq!(rec.observe(&AccountEvent::Unhandled { method: "MESSAGE".into() }, t(1)), None);
        assert_eq!(rec.observe(&AccountEvent::MediaFailed { call_id: "nobody".into(), reason: String::new() }, t(1)), None);
        // Empty ids are ignored.
        rec.observe_dial("", "1", t(0));
        rec.observe(&incoming("", "1"), t(0));
        rec.observe(&call("", CallEvent::Ringing), t(0));
        assert_eq!(rec.open_calls(), 0);
        // A clock that went back during the call: the end is not before
        // the start.
        rec.observe_dial("back", "1", t(100));
        let r = rec.observe(&call("back", ended(486)), t(50)).unwrap();
        assert_eq!(r.ended_at, t(100));
    }

    #[test]
    fn finish_all_closes_open_calls() {
        let mut rec = HistoryRecorder::new();
        rec.observe_dial("out", "1", t(0));
        rec.observe(&incoming("in", "2"), t(1));
        rec.observe(&incoming("talk", "3"), t(2));
        rec.observe(&call("talk", CallEvent::Connected { sdp: None }), t(3));
        let done = rec.finish_all(t(10));
        let outcomes: Vec<(&str, Outcome)> = done.iter().map(|r| (r.id.as_str(), r.outcome)).collect();
        assert_eq!(outcomes, vec![("out", Outcome::Cancelled), ("in", Outcome::Missed), ("talk", Outcome::Answered)]);
        assert_eq!(rec.open_calls(), 0);
    }

    #[test]
    fn a_flood_of_calls_is_bounded() {
        let mut rec = HistoryRecorder::new();
        for i in 0..10_000u64 {
            rec.observe(&incoming(&format!("flood{i}"), "x"), t(i));
        }
        assert_eq!(rec.open_calls(), MAX_OPEN_CALLS);
        // The newest are kept.
        assert!(rec.observe(&call("flood9999", ended(487)), t(10_000)).is_some());
        assert!(rec.observe(&call("flood0", ended(487)), t(10_000)).is_none());
        // Oversized strings are cut.
        let long = "x".repeat(100_000);
        rec.observe(&incoming(&long, &long), t(0));
        let r = rec.observe(&call(&long, ended(487)), t(1)).unwrap();
        assert_eq!((r.id.len(), r.remote.user.len()), (MAX_FIELD_CHARS, MAX_FIELD_CHARS));
        // Cut on a character boundary.
        assert_eq!(cap(&"日".repeat(300)).chars().count(), MAX_FIELD_CHARS);
    }

    #[test]
    fn history_is_bounded_newest_first_and_unique() {
        let mut h = History::new(3);
        for (id, start) in [("a", 10), ("b", 20), ("c", 30), ("d", 40)] {
            h.add(record(id, start, Outcome::Answered));
        }
        let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d", "c", "b"], "the oldest went");
        // A call that started earlier but ended later goes in by its start.
        h.add(record("e", 25, Outcome::Answered));
        let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d", "c", "e"]);
        // An older call than all of them, into a full history: it is the
        // oldest, so it is the one dropped.
        h.add(record("old", 1, Outcome::Answered));
        assert!(h.get("old").is_none());
        // The same Call-ID again replaces the record.
        h.add(record("c", 35, Outcome::Failed { code: 486 }));
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("c").unwrap().outcome, Outcome::Failed { code: 486 });
        let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d", "c", "e"]);
        assert!(h.remove("e"));
        assert!(!h.remove("e"));
        h.clear();
        assert!(h.is_empty());

        assert_eq!(History::new(0).capacity(), 1);
        assert_eq!(History::new(usize::MAX).capacity(), MAX_CAPACITY);
        assert_eq!(History::default().capacity(), DEFAULT_CAPACITY);
    }

    #[test]
    fn redial_and_missed_badge() {
        let mut h = History::default();
        let mut rec = HistoryRecorder::new();
        rec.observe_dial("out", "0312345678", t(0));
        h.add(rec.observe(&call("out", ended(486)), t(1)).unwrap());
        for (id, from) in [("m1", "2001"), ("m2", "anonymous"), ("m3", "")] {
            rec.observe(&incoming(id, from), t(2));
            h.add(rec.observe(&call(id, ended(487)), t(3)).unwrap());
        }
        assert_eq!(h.redial_target("out"), Some("0312345678"));
        assert_eq!(h.redial_target("m1"), Some("2001"));
        assert_eq!(h.redial_target("m2"), None, "anonymous");
        assert_eq!(h.redial_target("m3"), None, "unknown caller");
        assert_eq!(h.redial_target("nope"), None);
        assert_eq!(h.missed_unseen(), 3);
        assert_eq!(h.mark_seen(), 3);
        assert_eq!(h.missed_unseen(), 0);
        assert_eq!(h.mark_seen(), 0);
        rec.observe(&incoming("m4", "2001"), t(5));
        h.add(rec.observe(&call("m4", ended(487)), t(6)).unwrap());
        assert_eq!(h.missed_unseen(), 1);
    }

    #[test]
    fn saves_and_loads_the_same_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let (mut h, report) = History::open(&path, 100).unwrap();
        assert_eq!(report, LoadReport::default(), "no file yet: empty");
        assert!(h.is_empty());
        h.save().unwrap();
        assert!(!path.exists(), "nothing changed, nothing written");

        let mut rec = HistoryRecorder::new();
        rec.observe_dial("o", "1001", t(0) + Duration::from_millis(900));
        rec.observe(&call("o", CallEvent::Connected { sdp: None }), t(2) + Duration::from_millis(100));
        h.add(rec.observe(&call("o", ended(200)), t(62)).unwrap());
        rec.observe(&incoming("i", "山田"), t(70));
        h.add(rec.observe(&call("i", ended(487)), t(80)).unwrap());
        let mut odd = record("odd", 90, Outcome::Failed { code: 503 });
        odd.remote.uri = Some("sip:1001@pbx.example;transport=tls".into());
        odd.remote.display_name = Some("Reception \"front\" \n desk".into());
        h.add(odd);
        assert!(h.is_dirty());
        h.save().unwrap();
        assert!(!h.is_dirty());

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().next().unwrap().contains("\"id\":\"o\""), "oldest first in the file");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");

        let (again, report) = History::open(&path, 100).unwrap();
        assert!(report.is_clean());
        assert_eq!(report.loaded, 3);
        assert_eq!(again.iter().collect::<Vec<_>>(), h.iter().collect::<Vec<_>>());
        assert_eq!(again.get("o").unwrap().duration, Duration::from_millis(59_900));
        assert_eq!(again.missed_unseen(), 1);

        // Changes are written over the old file.
        let (mut again, _) = History::open(&path, 100).unwrap();
        again.mark_seen();
        again.remove("odd");
        again.save().unwrap();
        let (third, _) = History::open(&path, 100).unwrap();
        assert_eq!((third.len(), third.missed_unseen()), (2, 0));

        // A smaller capacity keeps the newest.
        let (small, report) = History::open(&path, 1).unwrap();
        assert_eq!((small.len(), report.loaded, report.dropped), (1, 1, 1));
        assert_eq!(small.iter().next().unwrap().id, "i");
        assert!(small.is_dirty());
    }

    #[test]
    fn corrupt_lines_are_skipped_and_good_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut h = History::new(100);
        for i in 0..5 {
            h.add(record(&format!("r{i}"), i * 100, Outcome::Answered));
        }
        h.save_to(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = good.split_inclusive(|&b| b == b'\n').collect();

        let mut bad = Vec::new();
        bad.extend_from_slice(lines[0]);
        bad.extend_from_slice(b"this is not json\n");
        bad.extend_from_slice(lines[1]);
        bad.extend_from_slice(b"\n   \r\n"); // blank lines are not errors
        bad.extend_from_slice(b"{\"id\":\"x\",\"direction\":\"sideways\"}\n");
        bad.extend_from_slice(&[0xff, 0xfe, 0x00, b'{', b'\n']);
        bad.extend_from_slice(lines[2]);
        bad.extend_from_slice(b"{\"id\":\"\",\"direction\":\"outgoing\",\"outcome\":{\"kind\":\"answered\"},\"remote\":{\"user\":\"1\"},\"started_at\":1,\"ended_at\":2}\n");
        bad.extend_from_slice(b"{\"id\":\"far\",\"direction\":\"outgoing\",\"outcome\":{\"kind\":\"answered\"},\"remote\":{\"user\":\"1\"},\"started_at\":18446744073709551615,\"ended_at\":2}\n");
        bad.extend(std::iter::repeat_n(b'[', MAX_LINE * 3));
        bad.push(b'\n');
        bad.extend_from_slice(lines[3]);
        // A crash in the middle of the last line.
        bad.extend_from_slice(&lines[4][..lines[4].len() / 2]);
        std::fs::write(&path, &bad).unwrap();

        let (h, report) = History::open(&path, 100).unwrap();
        let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r3", "r2", "r1", "r0"]);
        assert_eq!((report.loaded, report.skipped, report.dropped), (4, 7, 0));
        let lines_reported: Vec<u64> = report.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines_reported, [2, 6, 7, 9, 10, 11, 13]);
        assert!(report.bad_lines[4].reason.contains("out of range"), "{:?}", report.bad_lines[4]);
        assert!(report.bad_lines[5].reason.contains("longer than"), "{:?}", report.bad_lines[5]);
        assert!(h.is_dirty(), "the next save cleans the file");

        // Every prefix of a good file: no panic, and every complete line
        // before the cut is there.
        for len in 0..=good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            let (h, report) = History::open(&path, 100).unwrap();
            let complete = good[..len].iter().filter(|&&b| b == b'\n').count();
            assert!(h.len() >= complete && h.len() <= complete + 1, "prefix {len}: {} records", h.len());
            assert_eq!(report.skipped + h.len(), complete + usize::from(len > 0 && good[len - 1] != b'\n'), "prefix {len}");
        }

        // Random bytes: no panic.
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            let noise: Vec<u8> = (0..512)
                .map(|_| {
                    (crate::seed::splitmix64(&mut seed) >> 56) as u8
                })
                .collect();
            std::fs::write(&path, &noise).unwrap();
            let _ = History::open(&path, 100).unwrap();
        }
    }

    #[test]
    fn unreadable_or_unwritable_paths_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: cannot be read as history.
        assert!(matches!(History::open(dir.path(), 10), Err(HistoryError::Io { .. })));
        // A folder that is not there: the save fails, nothing is left.
        let mut h = History::new(10);
        h.add(record("a", 0, Outcome::Answered));
        let missing = dir.path().join("no").join("history.jsonl");
        let err = h.save_to(&missing).unwrap_err();
        assert!(err.to_string().contains("history.jsonl"), "{err}");
        // A path with no file name.
        assert!(h.save_to("/").is_err());
        assert!(!missing.exists());
        // An old file is replaced whole by a save.
        let path = dir.path().join("h");
        std::fs::write(&path, vec![b'x'; 100_000]).unwrap();
        h.save_to(&path).unwrap();
        let (back, report) = History::open(&path, 10).unwrap();
        assert!(report.is_clean());
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn times_before_the_epoch_do_not_break_anything() {
        let before = UNIX_EPOCH - Duration::from_secs(1000);
        let r = CallRecord::new("x", Direction::Incoming, Outcome::Missed, RemoteParty::user("1"), before, None, before);
        assert_eq!((r.started_at, r.ended_at), (UNIX_EPOCH, UNIX_EPOCH));
        // Answer after the end (a clock that jumped): no talk time.
        let r = CallRecord::new("y", Direction::Incoming, Outcome::Answered, RemoteParty::user("1"), t(0), Some(t(10)), t(5));
        assert_eq!(r.duration, Duration::ZERO);
    }
}
