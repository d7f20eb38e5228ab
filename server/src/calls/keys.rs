//! In-call feature codes: keys pressed on a phone during a bridged call
//! that ask the PBX to act, the way desk phones without a usable transfer
//! key transfer a call on an office PBX: the transfer code (`##` by
//! default, setting `transfer_code`), the number, then `#` (or a pause).
//! `##1003#` transfers the other party to 1003, `##*71#` parks it.
//!
//! Pure: fed keys and times by the call task, so the rules are tested
//! without phones. The keys also reach the other party as they are (the
//! relay does not hold them back), as on most office PBXs.

use std::time::{Duration, Instant};

/// Keys of the code must follow each other this closely.
const CODE_GAP: Duration = Duration::from_secs(2);
/// After the code, a pause this long ends the number.
const NUMBER_GAP: Duration = Duration::from_secs(4);
/// Longer is no number of ours (and bounds what one leg can make us keep).
const MAX_NUMBER: usize = 24;

/// What the keys ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Transfer the other party to this number (a park slot too).
    Transfer(String),
}

/// One leg's keys, watched for the transfer code.
#[derive(Debug, Clone, Default)]
pub struct KeyWatch {
    /// The code's keys seen so far, and when the last came.
    code_seen: usize,
    last: Option<Instant>,
    /// After the whole code: the number being keyed.
    number: Option<String>,
}

impl KeyWatch {
    /// One key from the leg. `code` is the transfer code (empty: off).
    pub fn key(&mut self, code: &str, digit: char, now: Instant) -> Option<KeyAction> {
        let gap_ok = self.last.is_some_and(|t| now.duration_since(t) <= if self.number.is_some() { NUMBER_GAP } else { CODE_GAP });
        if !gap_ok {
            // Too slow: whatever was begun is forgotten.
            self.code_seen = 0;
            self.number = None;
        }
        self.last = Some(now);
        if code.is_empty() {
            return None;
        }
        if let Some(number) = self.number.as_mut() {
            if digit == '#' {
                let n = self.number.take().unwrap_or_default();
                self.code_seen = 0;
                return (!n.is_empty()).then_some(KeyAction::Transfer(n));
            }
            if (digit.is_ascii_digit() || digit == '*') && number.len() < MAX_NUMBER {
                number.push(digit);
            } else {
                // A key no number has (A-D), or far too many: not a transfer.
                self.number = None;
                self.code_seen = 0;
            }
            return None;
        }
        let want = code.as_bytes();
        if want.get(self.code_seen) == Some(&(digit as u8)) {
            self.code_seen += 1;
        } else {
            // `###`-like codes: a wrong key may still start the code.
            self.code_seen = usize::from(want.first() == Some(&(digit as u8)));
        }
        if self.code_seen == want.len() {
            self.code_seen = 0;
            self.number = Some(String::new());
        }
        None
    }

    /// When a pause would end the number being keyed.
    pub fn deadline(&self) -> Option<Instant> {
        self.number.as_ref().filter(|n| !n.is_empty()).and(self.last).map(|t| t + NUMBER_GAP)
    }

    /// Time passed: a number keyed and then a pause is as good as `#`.
    pub fn on_time(&mut self, now: Instant) -> Option<KeyAction> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.code_seen = 0;
            return self.number.take().map(KeyAction::Transfer);
        }
        None
    }

    /// Forget everything (the leg changed hands).
    pub fn reset(&mut self) {
        *self = KeyWatch::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(w: &mut KeyWatch, code: &str, s: &str, start: Instant, step_ms: u64) -> Vec<KeyAction> {
        s.chars().enumerate().filter_map(|(i, c)| w.key(code, c, start + Duration::from_millis(step_ms * i as u64))).collect()
    }

    #[test]
    fn code_number_and_hash_transfer() {
        let t = Instant::now();
        let mut w = KeyWatch::default();
        assert_eq!(keys(&mut w, "##", "##1003#", t, 200), vec![KeyAction::Transfer("1003".into())]);
        // Parking is a transfer to a slot.
        assert_eq!(keys(&mut w, "##", "##*71#", t + Duration::from_secs(10), 200), vec![KeyAction::Transfer("*71".into())]);
        assert_eq!(w.deadline(), None);
    }

    #[test]
    fn digits_before_the_code_and_other_codes_are_ignored() {
        let t = Instant::now();
        let mut w = KeyWatch::default();
        // A PIN typed into a far menu, then the code.
        assert_eq!(keys(&mut w, "##", "1234#5##1002#", t, 150), vec![KeyAction::Transfer("1002".into())]);
        let mut w = KeyWatch::default();
        assert_eq!(keys(&mut w, "*9", "#*9300#", t, 150), vec![KeyAction::Transfer("300".into())]);
        let mut w = KeyWatch::default();
        assert!(keys(&mut w, "", "##1003#", t, 150).is_empty(), "an empty code turns the feature off");
    }

    #[test]
    fn a_pause_ends_the_number_and_a_slow_code_is_no_code() {
        let t = Instant::now();
        let mut w = KeyWatch::default();
        assert!(keys(&mut w, "##", "##1003", t, 300).is_empty());
        let d = w.deadline().expect("a number being keyed has a deadline");
        assert_eq!(w.on_time(d - Duration::from_millis(1)), None);
        assert_eq!(w.on_time(d), Some(KeyAction::Transfer("1003".into())));
        assert_eq!(w.deadline(), None);
        // `#`, then `#` 3 s later: not the code.
        let mut w = KeyWatch::default();
        assert_eq!(w.key("##", '#', t), None);
        assert_eq!(w.key("##", '#', t + Duration::from_secs(3)), None);
        assert!(keys(&mut w, "##", "1003#", t + Duration::from_secs(3) + Duration::from_millis(100), 100).is_empty());
        // The code and then nothing: nothing happens, ever.
        let mut w = KeyWatch::default();
        assert!(keys(&mut w, "##", "##", t, 100).is_empty());
        assert_eq!(w.deadline(), None);
        assert_eq!(w.on_time(t + Duration::from_secs(60)), None);
    }

    #[test]
    fn odd_keys_and_long_numbers_cancel() {
        let t = Instant::now();
        let mut w = KeyWatch::default();
        assert!(keys(&mut w, "##", "##10A3#", t, 100).is_empty());
        let long = format!("##{}#", "1".repeat(MAX_NUMBER + 1));
        assert!(keys(&mut w, "##", &long, t + Duration::from_secs(10), 100).is_empty());
        // `###`: the code, then an empty number: cancelled.
        assert!(keys(&mut w, "##", "###", t + Duration::from_secs(20), 100).is_empty());
    }
}
