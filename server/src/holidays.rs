//! Japanese public holidays, computed (no table to update each year) for the
//! PBX's business-hour and holiday schedules.
//!
//! The rules are those of the Act on National Holidays (国民の祝日に関する法律)
//! as amended, with the special laws that added or moved days:
//!
//! * fixed-date holidays, and the "Happy Monday" ones (成人の日 and 体育の日
//!   from 2000, 海の日 and 敬老の日 from 2003) with their earlier fixed dates;
//! * 春分の日 and 秋分の日 by the usual approximation formula (valid 1980–2099;
//!   the official dates are announced by the Cabinet each February for the
//!   following year, from the National Astronomical Observatory's ephemeris);
//! * 天皇誕生日 on 4-29 until 1988, 12-23 from 1989 to 2018, none in 2019 and
//!   2-23 from 2020; みどりの日 on 4-29 from 1989, moved to 5-4 in 2007 when 4-29
//!   became 昭和の日; 海の日 from 1996; 山の日 from 2016; 体育の日 renamed
//!   スポーツの日 from 2020;
//! * the Tokyo Olympics moves of 2020 and 2021 (海の日, スポーツの日, 山の日);
//! * one-off holidays by special laws: 1989-02-24, 1990-11-12, 1993-06-09,
//!   2019-05-01 and 2019-10-22 (the 2019 ones count as national holidays, so
//!   they make 2019-04-30 and 2019-05-02 国民の休日);
//! * 振替休日: a holiday on a Sunday moves the day off to the next day that is
//!   not a holiday (from 2007; before, only to the Monday, and only when the
//!   Monday was not a holiday itself);
//! * 国民の休日: a day between two national holidays (from 1985-12-27; before
//!   2007 not when it is a Sunday or a 振替休日).

use crate::calendar::{civil_from_days, days_from_civil, days_in_month};
use std::fmt;

/// The first year [`holidays`] computes.
pub const FIRST_YEAR: i32 = 1980;
/// The last year [`holidays`] computes (the equinox formula's limit).
pub const LAST_YEAR: i32 = 2099;

/// A date of the (proleptic) Gregorian calendar. Orders by year, month, day;
/// shows as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// The date, if it exists (month 1..=12, day within the month).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        (day >= 1 && day <= days_in_month(i64::from(year), month)).then_some(Date { year, month, day })
    }

    /// The date of a day count since 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let (y, m, d) = civil_from_days(days);
        Date { year: y as i32, month: m, day: d }
    }

    /// The day count since 1970-01-01.
    pub fn days(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
    }

    /// The day of the week: 0 is Sunday, 1 Monday, ... 6 Saturday.
    pub fn weekday(self) -> u32 {
        crate::calendar::weekday(self.days())
    }

    /// The date `n` days later (earlier when `n` is negative).
    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.days() + n)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for Date {
    type Err = String;

    /// `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<Date, String> {
        let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
            return Err(bad());
        }
        let (y, m, d) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        Date::new(y, m, d).ok_or_else(bad)
    }
}

/// A day off: a national holiday (国民の祝日), a one-off holiday by special
/// law, a 振替休日 or a 国民の休日.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    /// The name in Japanese, as the Cabinet Office lists it (振替休日 and
    /// 国民の休日 for the days the Cabinet Office calls just 休日).
    pub name_ja: &'static str,
    /// The English name (the Cabinet Office's English one where it has one).
    pub name_en: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolidayError {
    #[error("year {0} is out of range: Japanese public holidays are computed for {FIRST_YEAR} to {LAST_YEAR} only")]
    OutOfRange(i32),
}

const SUBSTITUTE: (&str, &str) = ("振替休日", "Substitute Holiday");
const CITIZENS: (&str, &str) = ("国民の休日", "Citizens' Holiday");

/// The holidays of a year, sorted by date.
pub fn holidays(year: i32) -> Result<Vec<Holiday>, HolidayError> {
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return Err(HolidayError::OutOfRange(year));
    }
    let national = national_holidays(year);
    let is_national = |d: Date| national.iter().any(|h| h.date == d);
    let mut extra: Vec<Holiday> = Vec::new();

    // 振替休日 (since 1973-04-12, before the supported range).
    for h in national.iter().filter(|h| h.date.weekday() == 0) {
        let mut next = h.date.add_days(1);
        if year >= 2007 {
            while is_national(next) {
                next = next.add_days(1);
            }
        } else if is_national(next) {
            continue;
        }
        extra.push(holiday(next, SUBSTITUTE));
    }

    // 国民の休日 (since the amendment in force from 1985-12-27).
    let since = Date { year: 1985, month: 12, day: 27 };
    for pair in national.windows(2) {
        let middle = pair[0].date.add_days(1);
        if middle < since || pair[1].date != middle.add_days(1) || extra.iter().any(|h| h.date == middle) {
            continue;
        }
        if year < 2007 && middle.weekday() == 0 {
            continue;
        }
        extra.push(holiday(middle, CITIZENS));
    }

    let mut all = national;
    all.extend(extra);
    all.sort_by_key(|h| h.date);
    Ok(all)
}

/// The holiday on a date, if any; `None` also for dates outside
/// [`FIRST_YEAR`]..=[`LAST_YEAR`] (use [`holidays`] to tell those apart).
pub fn is_holiday(date: Date) -> Option<Holiday> {
    holidays(date.year).ok()?.into_iter().find(|h| h.date == date)
}

fn holiday(date: Date, (name_ja, name_en): (&'static str, &'static str)) -> Holiday {
    Holiday { date, name_ja, name_en }
}

/// The `n`th (1-based) Monday of a month.
fn nth_monday(year: i32, month: u32, n: u32) -> Date {
    let first = Date { year, month, day: 1 };
    let to_monday = (8 - first.weekday()) % 7;
    Date { year, month, day: 1 + to_monday + 7 * (n - 1) }
}

/// The day of March of the vernal equinox, and of September of the autumnal
/// one: ⌊C + 0.242194 (Y − 1980) − ⌊(Y − 1980) / 4⌋⌋ with C = 20.8431 and
/// 23.2488 (valid 1980–2099), in millionths so no rounding creeps in.
fn equinoxes(year: i32) -> (u32, u32) {
    let n = i64::from(year - 1980);
    let drift = 242_194 * n - 1_000_000 * n.div_euclid(4);
    let day = |c: i64| (c + drift).div_euclid(1_000_000) as u32;
    (day(20_843_100), day(23_248_800))
}

/// The national holidays proper (and the one-off days that count as such),
/// sorted by date: what 振替休日 and 国民の休日 are derived from.
fn national_holidays(year: i32) -> Vec<Holiday> {
    let mut v = Vec::new();
    let mut add = |month: u32, day: u32, name: (&'static str, &'static str)| v.push(holiday(Date { year, month, day }, name));
    let md = |d: Date| (d.month, d.day);

    add(1, 1, ("元日", "New Year's Day"));
    let coming_of_age = if year < 2000 { (1, 15) } else { md(nth_monday(year, 1, 2)) };
    add(coming_of_age.0, coming_of_age.1, ("成人の日", "Coming of Age Day"));
    add(2, 11, ("建国記念の日", "National Foundation Day"));
    const EMPEROR: (&str, &str) = ("天皇誕生日", "The Emperor's Birthday");
    if year >= 2020 {
        add(2, 23, EMPEROR);
    }
    let (vernal, autumnal) = equinoxes(year);
    add(3, vernal, ("春分の日", "Vernal Equinox Day"));
    match year {
        ..=1988 => add(4, 29, EMPEROR),
        1989..=2006 => add(4, 29, ("みどりの日", "Greenery Day")),
        _ => add(4, 29, ("昭和の日", "Showa Day")),
    }
    add(5, 3, ("憲法記念日", "Constitution Memorial Day"));
    if year >= 2007 {
        add(5, 4, ("みどりの日", "Greenery Day"));
    }
    add(5, 5, ("こどもの日", "Children's Day"));
    const MARINE: (&str, &str) = ("海の日", "Marine Day");
    match year {
        ..=1995 => {}
        1996..=2002 => add(7, 20, MARINE),
        2020 => add(7, 23, MARINE),
        2021 => add(7, 22, MARINE),
        _ => {
            let d = nth_monday(year, 7, 3);
            add(d.month, d.day, MARINE)
        }
    }
    const SPORTS: (&str, &str) = ("スポーツの日", "Sports Day");
    match year {
        2020 => add(7, 24, SPORTS),
        2021 => add(7, 23, SPORTS),
        _ => {}
    }
    const MOUNTAIN: (&str, &str) = ("山の日", "Mountain Day");
    match year {
        ..=2015 => {}
        2020 => add(8, 10, MOUNTAIN),
        2021 => add(8, 8, MOUNTAIN),
        _ => add(8, 11, MOUNTAIN),
    }
    const AGED: (&str, &str) = ("敬老の日", "Respect for the Aged Day");
    if year <= 2002 {
        add(9, 15, AGED);
    } else {
        let d = nth_monday(year, 9, 3);
        add(d.month, d.day, AGED);
    }
    add(9, autumnal, ("秋分の日", "Autumnal Equinox Day"));
    const HEALTH_SPORTS: (&str, &str) = ("体育の日", "Health and Sports Day");
    match year {
        ..=1999 => add(10, 10, HEALTH_SPORTS),
        2000..=2019 => {
            let d = nth_monday(year, 10, 2);
            add(d.month, d.day, HEALTH_SPORTS)
        }
        2020 | 2021 => {}
        _ => {
            let d = nth_monday(year, 10, 2);
            add(d.month, d.day, SPORTS)
        }
    }
    add(11, 3, ("文化の日", "Culture Day"));
    add(11, 23, ("勤労感謝の日", "Labor Thanksgiving Day"));
    if (1989..=2018).contains(&year) {
        add(12, 23, EMPEROR);
    }

    // One-off holidays by special laws.
    match year {
        1989 => add(2, 24, ("昭和天皇の大喪の礼", "State Funeral of Emperor Showa")),
        1990 => add(11, 12, ("即位礼正殿の儀", "Enthronement Ceremony")),
        1993 => add(6, 9, ("皇太子徳仁親王の結婚の儀", "Wedding of Crown Prince Naruhito")),
        2019 => {
            add(5, 1, ("即位の日", "Enthronement Day"));
            add(10, 22, ("即位礼正殿の儀", "Enthronement Ceremony"));
        }
        _ => {}
    }
    v.sort_by_key(|h| h.date);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(year: i32, month: u32, day: u32) -> Date {
        Date::new(year, month, day).unwrap()
    }

    /// Compares a year with a list of (month, day, name_ja), in order.
    fn check_year(year: i32, expected: &[(u32, u32, &str)]) {
        let got: Vec<(u32, u32, &str)> = holidays(year).unwrap().iter().map(|h| (h.date.month, h.date.day, h.name_ja)).collect();
        assert_eq!(got, expected, "{year}");
    }

    // The expected years are the Cabinet Office's list (内閣府「国民の祝日」に
    // ついて, syukujitsu.csv), where 振替休日, 国民の休日 and the 2019 one-offs
    // are all listed as 休日.

    #[test]
    fn year_2019() {
        check_year(
            2019,
            &[
                (1, 1, "元日"),
                (1, 14, "成人の日"),
                (2, 11, "建国記念の日"),
                (3, 21, "春分の日"),
                (4, 29, "昭和の日"),
                (4, 30, "国民の休日"),
                (5, 1, "即位の日"),
                (5, 2, "国民の休日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 15, "海の日"),
                (8, 11, "山の日"),
                (8, 12, "振替休日"),
                (9, 16, "敬老の日"),
                (9, 23, "秋分の日"),
                (10, 14, "体育の日"),
                (10, 22, "即位礼正殿の儀"),
                (11, 3, "文化の日"),
                (11, 4, "振替休日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    #[test]
    fn year_2020() {
        check_year(
            2020,
            &[
                (1, 1, "元日"),
                (1, 13, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (2, 24, "振替休日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 23, "海の日"),
                (7, 24, "スポーツの日"),
                (8, 10, "山の日"),
                (9, 21, "敬老の日"),
                (9, 22, "秋分の日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    #[test]
    fn year_2021() {
        check_year(
            2021,
            &[
                (1, 1, "元日"),
                (1, 11, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (7, 22, "海の日"),
                (7, 23, "スポーツの日"),
                (8, 8, "山の日"),
                (8, 9, "振替休日"),
                (9, 20, "敬老の日"),
                (9, 23, "秋分の日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    #[test]
    fn year_2024() {
        check_year(
            2024,
            &[
                (1, 1, "元日"),
                (1, 8, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 12, "振替休日"),
                (2, 23, "天皇誕生日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 15, "海の日"),
                (8, 11, "山の日"),
                (8, 12, "振替休日"),
                (9, 16, "敬老の日"),
                (9, 22, "秋分の日"),
                (9, 23, "振替休日"),
                (10, 14, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 4, "振替休日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    #[test]
    fn year_2025() {
        check_year(
            2025,
            &[
                (1, 1, "元日"),
                (1, 13, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (2, 24, "振替休日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 21, "海の日"),
                (8, 11, "山の日"),
                (9, 15, "敬老の日"),
                (9, 23, "秋分の日"),
                (10, 13, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
                (11, 24, "振替休日"),
            ],
        );
    }

    #[test]
    fn year_2026() {
        check_year(
            2026,
            &[
                (1, 1, "元日"),
                (1, 12, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 20, "海の日"),
                (8, 11, "山の日"),
                (9, 21, "敬老の日"),
                (9, 22, "国民の休日"),
                (9, 23, "秋分の日"),
                (10, 12, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    /// 2027, as the Cabinet Office published it (内閣府「国民の祝日」).
    #[test]
    fn year_2027() {
        check_year(
            2027,
            &[
                (1, 1, "元日"),
                (1, 11, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (3, 21, "春分の日"),
                (3, 22, "振替休日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (7, 19, "海の日"),
                (8, 11, "山の日"),
                (9, 20, "敬老の日"),
                (9, 23, "秋分の日"),
                (10, 11, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        );
    }

    #[test]
    fn older_rules() {
        let name = |y, m, dd| is_holiday(d(y, m, dd)).map(|h| h.name_ja);
        // Before the 国民の休日 rule (1985-12-27): 5-4 was a working day,
        // unless it was the Monday after a Sunday 5-3.
        assert_eq!(name(1985, 5, 4), None);
        assert_eq!(name(1981, 5, 4), Some("振替休日"));
        assert_eq!(name(1986, 5, 4), None); // a Sunday, which was no 国民の休日 before 2007
        assert_eq!(name(1987, 5, 4), Some("振替休日"));
        assert_eq!(name(1988, 5, 4), Some("国民の休日"));
        assert_eq!(name(1988, 4, 29), Some("天皇誕生日"));
        assert_eq!(name(1989, 4, 29), Some("みどりの日"));
        assert_eq!(name(1989, 12, 23), Some("天皇誕生日"));
        assert_eq!(name(1989, 2, 24), Some("昭和天皇の大喪の礼"));
        assert_eq!(name(1990, 11, 12), Some("即位礼正殿の儀"));
        assert_eq!(name(1993, 6, 9), Some("皇太子徳仁親王の結婚の儀"));
        assert_eq!(name(1995, 7, 20), None);
        assert_eq!(name(1996, 7, 20), Some("海の日"));
        assert_eq!(name(1999, 1, 15), Some("成人の日"));
        assert_eq!(name(1999, 10, 10), Some("体育の日")); // a Sunday
        assert_eq!(name(1999, 10, 11), Some("振替休日"));
        assert_eq!(name(2000, 1, 10), Some("成人の日"));
        assert_eq!(name(2000, 10, 9), Some("体育の日"));
        assert_eq!(name(2002, 9, 15), Some("敬老の日"));
        assert_eq!(name(2003, 7, 21), Some("海の日"));
        assert_eq!(name(2003, 9, 15), Some("敬老の日"));
        assert_eq!(name(2006, 1, 2), Some("振替休日"));
        assert_eq!(name(2006, 5, 4), Some("国民の休日"));
        // 2007's rules: 5-4 みどりの日, so a Sunday 5-4 moves the day off to 5-6.
        assert_eq!(name(2007, 4, 29), Some("昭和の日"));
        assert_eq!(name(2008, 5, 6), Some("振替休日"));
        assert_eq!(name(2009, 9, 22), Some("国民の休日"));
        assert_eq!(name(2015, 9, 22), Some("国民の休日"));
        assert_eq!(name(2015, 8, 11), None);
        assert_eq!(name(2016, 8, 11), Some("山の日"));
        assert_eq!(name(2018, 12, 23), Some("天皇誕生日"));
        assert_eq!(name(2018, 12, 24), Some("振替休日"));
        assert_eq!(name(2019, 12, 23), None);
        assert_eq!(name(2019, 2, 23), None);
        assert_eq!(name(2020, 10, 12), None);
        assert_eq!(name(2021, 10, 11), None);
        assert_eq!(name(2022, 10, 10), Some("スポーツの日"));
    }

    #[test]
    fn equinoxes_spot_checks() {
        let vernal = |y| holidays(y).unwrap().into_iter().find(|h| h.name_ja == "春分の日").unwrap().date;
        let autumnal = |y| holidays(y).unwrap().into_iter().find(|h| h.name_ja == "秋分の日").unwrap().date;
        assert_eq!(vernal(1980), d(1980, 3, 20));
        assert_eq!(autumnal(1980), d(1980, 9, 23));
        assert_eq!(vernal(2000), d(2000, 3, 20));
        assert_eq!(autumnal(2000), d(2000, 9, 23));
        assert_eq!(autumnal(2012), d(2012, 9, 22)); // the first 9-22 in 116 years
        assert_eq!(vernal(2019), d(2019, 3, 21));
        assert_eq!(vernal(2023), d(2023, 3, 21));
        assert_eq!(autumnal(2023), d(2023, 9, 23));
        assert_eq!(vernal(2027), d(2027, 3, 21));
        assert_eq!(autumnal(2028), d(2028, 9, 22));
        assert_eq!(vernal(2092), d(2092, 3, 19)); // the first 3-19 of the formula's range
        for y in FIRST_YEAR..=LAST_YEAR {
            assert!((19..=21).contains(&vernal(y).day), "{y}");
            assert!((22..=23).contains(&autumnal(y).day), "{y}");
        }
        assert!((FIRST_YEAR..2092).all(|y| vernal(y).day != 19));
    }

    #[test]
    fn every_year_is_consistent() {
        for y in FIRST_YEAR..=LAST_YEAR {
            let list = holidays(y).unwrap();
            assert!(list.windows(2).all(|p| p[0].date < p[1].date), "{y}: sorted, no duplicates");
            assert!(list.iter().all(|h| h.date.year == y), "{y}");
            assert!((12..=25).contains(&list.len()), "{y}: {}", list.len());
            for h in &list {
                if h.name_ja == "振替休日" {
                    assert_ne!(h.date.weekday(), 0, "{y}");
                }
            }
            for m in [1, 9, 10] {
                let happy = list.iter().filter(|h| h.date.month == m && h.date.weekday() == 1 && h.name_ja != "振替休日").count();
                if y >= 2003 || (m != 9 && y >= 2000) {
                    assert!(happy >= 1 || (m == 10 && (2020..=2021).contains(&y)), "{y}-{m}");
                }
            }
        }
    }

    #[test]
    fn out_of_range() {
        for y in [1979, 2100, 0, -5, i32::MAX] {
            let err = holidays(y).unwrap_err();
            assert_eq!(err, HolidayError::OutOfRange(y));
            let msg = err.to_string();
            assert!(msg.contains(&y.to_string()) && msg.contains("1980") && msg.contains("2099"), "{msg}");
        }
        assert_eq!(is_holiday(d(2100, 1, 1)), None);
        assert!(holidays(1980).is_ok() && holidays(2099).is_ok());
    }

    #[test]
    fn is_holiday_and_dates() {
        let h = is_holiday(d(2026, 1, 1)).unwrap();
        assert_eq!((h.name_ja, h.name_en), ("元日", "New Year's Day"));
        assert_eq!(is_holiday(d(2026, 1, 2)), None);
        assert_eq!(d(2026, 1, 1).to_string(), "2026-01-01");
        assert_eq!("2026-09-22".parse::<Date>(), Ok(d(2026, 9, 22)));
        assert!("2026-02-29".parse::<Date>().is_err());
        assert!("2026-9-22".parse::<Date>().is_err());
        assert!("2026-09-22-1".parse::<Date>().is_err());
        assert_eq!(Date::new(2024, 2, 29).map(|x| x.add_days(1)), Some(d(2024, 3, 1)));
        assert_eq!(Date::new(2025, 0, 1), None);
        assert_eq!(d(2026, 1, 1).weekday(), 4);
        assert!(d(2025, 12, 31) < d(2026, 1, 1));
    }
}
