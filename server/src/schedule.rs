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
        let span = Span { days: mask, from_min, to_min };
        // Overlapping ranges are almost always a typo (mon-fri 08:30-17:15;
        // fri 17:00-20:00): say which two, rather than guess the intent.
        if let Some(other) = spans.iter().find(|o: &&Span| o.days & span.days != 0 && o.from_min < span.to_min && span.from_min < o.to_min) {
            return Err(format!("hours {part:?} overlaps {:?}", hours_text(std::slice::from_ref(other))));
        }
        spans.push(span);
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

/// A one-off change for one date: closed all day (`None`), or open only
/// in these hours (minutes after midnight, `[from, to)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOverride {
    pub date: (i64, u32, u32),
    pub hours: Option<(u16, u16)>,
}

/// `2026-12-28 closed; 2027-01-04 10:00-15:00`: dates that differ from the
/// usual rules (an office closed for a local event, a Saturday opening for
/// tax returns). Each date once.
pub fn parse_overrides(text: &str) -> Result<Vec<DateOverride>, String> {
    let mut out: Vec<DateOverride> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let err = || format!("override {part:?}: expected like \"2026-12-28 closed\" or \"2027-01-04 10:00-15:00\"");
        let (date, what) = part.split_once(' ').ok_or_else(err)?;
        let parsed: holidays::Date = date.trim().parse().map_err(|_| err())?;
        let date = (i64::from(parsed.year), parsed.month, parsed.day);
        let hours = match what.trim() {
            "closed" => None,
            times => {
                let (f, t) = times.split_once('-').ok_or_else(err)?;
                let (f, t) = (parse_time(f).ok_or_else(err)?, parse_time(t).ok_or_else(err)?);
                if f >= t {
                    return Err(format!("override {part:?}: the end must come after the start"));
                }
                Some((f, t))
            }
        };
        if out.iter().any(|o| o.date == date) {
            return Err(format!("override {part:?}: that date is given twice"));
        }
        out.push(DateOverride { date, hours });
    }
    Ok(out)
}

pub fn overrides_text(list: &[DateOverride]) -> String {
    list.iter()
        .map(|o| {
            let (y, m, d) = o.date;
            match o.hours {
                None => format!("{y:04}-{m:02}-{d:02} closed"),
                Some((f, t)) => format!("{y:04}-{m:02}-{d:02} {:02}:{:02}-{:02}:{:02}", f / 60, f % 60, t / 60, t % 60),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `2027-01-01T10:00` as JST wall-clock time, in Unix seconds: the form of
/// the setting `schedule_clock`, which makes schedules act as if it were
/// that time (to try a schedule out, and for tests).
pub fn parse_clock(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once('T')?;
    let date: holidays::Date = date.parse().ok()?;
    let minutes = parse_time(time).filter(|m| *m < 24 * 60)?;
    Some(crate::calendar::days_from_civil(i64::from(date.year), date.month, date.day) * 86_400 + i64::from(minutes) * 60 - JST_OFFSET_SECS)
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
    /// One-off dates; they come before holidays, closed days and hours.
    pub overrides: Vec<DateOverride>,
}

/// Why a schedule chose its destination (for the log and the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    Open,
    Closed,
    Holiday(&'static str),
    ClosedDay,
    Disaster,
    /// A one-off date (open in its hours, or closed).
    Override { open: bool },
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
        if let Some(o) = self.overrides.iter().find(|o| o.date == (y, m, d)) {
            return match o.hours {
                Some((f, t)) if f <= minute && minute < t => (&self.open, Why::Override { open: true }),
                _ => (&self.closed, Why::Override { open: false }),
            };
        }
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
            overrides: Vec::new(),
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
    fn overlapping_hours_are_refused_with_both_named() {
        let e = parse_hours("mon-fri 08:30-17:15; fri 17:00-20:00").unwrap_err();
        assert!(e.contains("fri 17:00-20:00") && e.contains("08:30-17:15"), "{e}");
        // Touching is not overlapping; other days may share hours.
        assert!(parse_hours("mon-fri 08:30-12:00; mon-fri 13:00-17:15; sat 08:30-12:00").is_ok());
        assert!(parse_hours("mon 12:00-13:00; mon 13:00-14:00").is_ok());
    }

    #[test]
    fn one_off_dates_come_before_holidays_closed_days_and_hours() {
        let mut s = city_hall();
        s.overrides = parse_overrides("2026-12-07 closed; 2026-12-29 10:00-12:00; 2027-01-11 09:00-17:00").unwrap();
        // A Monday closed for the day.
        assert_eq!(s.route_at(jst(2026, 12, 7, 10, 0), false), (&Dest::User("2999".into()), Why::Override { open: false }));
        // Open two hours in the new-year closure.
        assert_eq!(s.route_at(jst(2026, 12, 29, 11, 0), false).1, Why::Override { open: true });
        assert_eq!(s.route_at(jst(2026, 12, 29, 12, 0), false).1, Why::Override { open: false });
        // Open on a public holiday (成人の日 2027).
        assert_eq!(s.route_at(jst(2027, 1, 11, 10, 0), false).1, Why::Override { open: true });
        // Disaster mode still wins; other days are as usual.
        assert_eq!(s.route_at(jst(2026, 12, 7, 10, 0), true).1, Why::Disaster);
        assert_eq!(s.route_at(jst(2026, 12, 8, 10, 0), false).1, Why::Open);
        assert_eq!(overrides_text(&s.overrides), "2026-12-07 closed; 2026-12-29 10:00-12:00; 2027-01-11 09:00-17:00");
        for bad in ["2026-12-07", "2026-13-01 closed", "2026-12-07 12:00-10:00", "2026-12-07 closed; 2026-12-07 10:00-11:00", "tomorrow closed"] {
            assert!(parse_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_clock_setting_reads_jst_wall_time() {
        assert_eq!(parse_clock("2027-01-11T10:00"), Some(jst(2027, 1, 11, 10, 0)));
        assert_eq!(parse_clock("2027-01-11T00:00"), Some(jst(2027, 1, 11, 0, 0)));
        for bad in ["2027-01-11", "2027-01-11T24:00", "2027-02-30T10:00", "10:00", ""] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
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
