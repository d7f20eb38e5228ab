//! Business-hour schedules: where a call goes when the office is open,
//! closed, on a public holiday or on a day the city closes (年末年始), and
//! in disaster mode. A schedule is a destination (`schedule:NAME`), so a
//! public number, a forwarding or a group's overflow can go through one;
//! it is evaluated in Japan Standard Time when the call arrives.

use crate::holidays;
use crate::store::{Dest, StoreError};

use crate::calendar::JST_OFFSET_SECS;

/// Opening hours on some weekdays: `[from, to)` in minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Bit 0 Sunday … bit 6 Saturday.
    pub days: u8,
    pub from_min: u16,
    pub to_min: u16,
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn day_index(s: &str) -> Option<u8> {
    DAY_NAMES.iter().position(|d| *d == s).map(|i| i as u8)
}

fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

/// `mon-fri 08:30-17:15; sat 09:00-12:00` (days: sun mon tue wed thu fri
/// sat, single or a range; several spans separated by `;`).
pub fn parse_hours(text: &str) -> Result<Vec<Span>, String> {
    let mut spans = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let err = || format!("hours {part:?}: expected like \"mon-fri 08:30-17:15\"");
        let (days, times) = part.split_once(' ').ok_or_else(err)?;
        let mut mask = 0u8;
        for d in days.split(',') {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a).ok_or_else(err)?, day_index(b).ok_or_else(err)?);
                    let mut i = a;
                    loop {
                        mask |= 1 << i;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => mask |= 1 << day_index(&d).ok_or_else(err)?,
            }
        }
        let (f, t) = times.trim().split_once('-').ok_or_else(err)?;
        let (from_min, to_min) = (parse_time(f).ok_or_else(err)?, parse_time(t).ok_or_else(err)?);
        if from_min >= to_min {
            return Err(format!("hours {part:?}: the end must come after the start"));
        }
        spans.push(Span { days: mask, from_min, to_min });
    }
    Ok(spans)
}

pub fn hours_text(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            let days: Vec<&str> = (0..7).filter(|i| s.days & (1 << i) != 0).map(|i| DAY_NAMES[i]).collect();
            format!("{} {:02}:{:02}-{:02}:{:02}", days.join(","), s.from_min / 60, s.from_min % 60, s.to_min / 60, s.to_min % 60)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A month and day (a closure that recurs every year).
pub type MonthDay = (u32, u32);

/// `12-29..01-03, 08-13`: days the office is closed every year (a range
/// may run over the new year).
pub fn parse_closed_days(text: &str) -> Result<Vec<(MonthDay, MonthDay)>, String> {
    let md = |s: &str| -> Option<MonthDay> {
        let (m, d) = s.trim().split_once('-')?;
        let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
        ((1..=12).contains(&m) && (1..=crate::calendar::days_in_month(2024, m)).contains(&d)).then_some((m, d))
    };
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let err = || format!("closed days {p:?}: expected MM-DD or MM-DD..MM-DD");
            match p.split_once("..") {
                Some((a, b)) => Ok((md(a).ok_or_else(err)?, md(b).ok_or_else(err)?)),
                None => md(p).map(|d| (d, d)).ok_or_else(err),
            }
        })
        .collect()
}

pub fn closed_days_text(days: &[(MonthDay, MonthDay)]) -> String {
    days.iter()
        .map(|(a, b)| if a == b { format!("{:02}-{:02}", a.0, a.1) } else { format!("{:02}-{:02}..{:02}-{:02}", a.0, a.1, b.0, b.1) })
        .collect::<Vec<_>>()
        .join(", ")
}

fn in_closed_days(days: &[(MonthDay, MonthDay)], today: MonthDay) -> bool {
    days.iter().any(|&(a, b)| if a <= b { a <= today && today <= b } else { today >= a || today <= b })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Lowercase letters, digits, `-`, `_` (what `schedule:NAME` names).
    pub name: String,
    pub label: String,
    pub hours: Vec<Span>,
    pub open: Dest,
    pub closed: Dest,
    /// Public holidays (computed) and the closed days; None: `closed`.
    pub holiday: Option<Dest>,
    /// In disaster mode; None: the schedule as usual.
    pub disaster: Option<Dest>,
    pub closed_days: Vec<(MonthDay, MonthDay)>,
    pub use_holidays: bool,
}

/// Why a schedule chose its destination (for the log and the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    Open,
    Closed,
    Holiday(&'static str),
    ClosedDay,
    Disaster,
}

pub fn check_name(name: &str) -> Result<(), StoreError> {
    if (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("schedule name {name:?}: 1 to 32 lowercase letters, digits, '-' or '_'")))
    }
}

impl Schedule {
    /// Where a call at `unix_secs` goes, and why.
    pub fn route_at(&self, unix_secs: i64, disaster_mode: bool) -> (&Dest, Why) {
        if disaster_mode {
            if let Some(d) = &self.disaster {
                return (d, Why::Disaster);
            }
        }
        let local = unix_secs + JST_OFFSET_SECS;
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        let (y, m, d) = crate::calendar::civil_from_days(days);
        let off = self.holiday.as_ref().unwrap_or(&self.closed);
        if self.use_holidays {
            let date = holidays::Date::new(y as i32, m, d);
            if let Some(h) = date.and_then(holidays::is_holiday) {
                return (off, Why::Holiday(h.name_ja));
            }
        }
        if in_closed_days(&self.closed_days, (m, d)) {
            return (off, Why::ClosedDay);
        }
        let weekday = crate::calendar::weekday(days);
        let open = self.hours.iter().any(|s| s.days & (1 << weekday) != 0 && s.from_min <= minute && minute < s.to_min);
        if open {
            (&self.open, Why::Open)
        } else {
            (&self.closed, Why::Closed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a JST wall-clock time.
    fn jst(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        crate::calendar::days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 - JST_OFFSET_SECS
    }

    fn city_hall() -> Schedule {
        Schedule {
            name: "main".into(),
            label: "代表".into(),
            hours: parse_hours("mon-fri 08:30-17:15").unwrap(),
            open: Dest::Group("3000".into()),
            closed: Dest::User("2999".into()),
            holiday: None,
            disaster: Some(Dest::Group("3900".into())),
            closed_days: parse_closed_days("12-29..01-03").unwrap(),
            use_holidays: true,
        }
    }

    #[test]
    fn hours_parse_and_print() {
        let s = parse_hours("mon-fri 08:30-17:15; sat 09:00-12:00").unwrap();
        assert_eq!(s[0].days, 0b0011_1110);
        assert_eq!((s[0].from_min, s[0].to_min), (510, 1035));
        assert_eq!(hours_text(&s), "mon,tue,wed,thu,fri 08:30-17:15; sat 09:00-12:00");
        assert_eq!(parse_hours(&hours_text(&s)).unwrap(), s);
        assert_eq!(parse_hours("fri-mon 22:00-24:00").unwrap()[0].days, 0b0110_0011, "a range over the weekend");
        for bad in ["mon 9-17", "funday 08:00-09:00", "mon 17:00-08:00", "mon 08:00-25:00", "mon"] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_by_hours_holidays_closed_days_and_disaster() {
        let s = city_hall();
        // Monday 2026-12-07.
        assert_eq!(s.route_at(jst(2026, 12, 7, 8, 29), false).1, Why::Closed);
        assert_eq!(s.route_at(jst(2026, 12, 7, 8, 30), false), (&Dest::Group("3000".into()), Why::Open));
        assert_eq!(s.route_at(jst(2026, 12, 7, 17, 14), false).1, Why::Open);
        assert_eq!(s.route_at(jst(2026, 12, 7, 17, 15), false).1, Why::Closed);
        // Saturday.
        assert_eq!(s.route_at(jst(2026, 12, 5, 10, 0), false).1, Why::Closed);
        // 成人の日, a Monday; and the substitute holiday of 2026-05-06 (Wednesday).
        assert_eq!(s.route_at(jst(2026, 1, 12, 10, 0), false).1, Why::Holiday("成人の日"));
        assert!(matches!(s.route_at(jst(2026, 5, 6, 10, 0), false).1, Why::Holiday(_)));
        // 年末年始 across the new year.
        assert_eq!(s.route_at(jst(2026, 12, 29, 10, 0), false).1, Why::ClosedDay);
        assert_eq!(s.route_at(jst(2027, 1, 4, 10, 0), false).1, Why::Open);
        // Disaster mode wins over everything.
        assert_eq!(s.route_at(jst(2026, 12, 7, 10, 0), true), (&Dest::Group("3900".into()), Why::Disaster));
        // Without a disaster destination, disaster mode changes nothing.
        let mut plain = city_hall();
        plain.disaster = None;
        assert_eq!(plain.route_at(jst(2026, 12, 7, 10, 0), true).1, Why::Open);
        // UTC midnight is 09:00 in Japan: open.
        assert_eq!(s.route_at(jst(2026, 12, 8, 9, 0), false).1, Why::Open);
    }

    #[test]
    fn closed_days_parse() {
        assert_eq!(parse_closed_days("12-29..01-03, 08-13").unwrap(), vec![((12, 29), (1, 3)), ((8, 13), (8, 13))]);
        assert_eq!(closed_days_text(&parse_closed_days("12-29..01-03, 08-13").unwrap()), "12-29..01-03, 08-13");
        assert!(parse_closed_days("13-01").is_err());
        assert!(parse_closed_days("02-30").is_err());
        assert!(parse_closed_days("02-29").is_ok(), "a leap day closes in leap years");
    }
}
