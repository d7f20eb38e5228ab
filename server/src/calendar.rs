//! Calendar arithmetic without a time-zone database: civil dates from day
//! counts (for HTTP dates, log exports and, later, business-hour schedules).

/// Japan Standard Time: UTC+9 all year (Japan has no daylight saving), so
/// local times need no time-zone database.
pub const JST_OFFSET_SECS: i64 = 9 * 3600;

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u32, d as u32)
}

/// The day count since 1970-01-01 of a proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]). The
/// date is not checked: day 0 or 32 simply counts from the month's start.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day of the week of a day count since 1970-01-01: 0 is Sunday, 1
/// Monday, ... 6 Saturday (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// Whether a year is a Gregorian leap year.
pub fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// The number of days in a month (1..=12) of a year; 0 for another month.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_days() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        assert_eq!(super::days_from_civil(1970, 1, 1), 0);
        assert_eq!(super::days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(super::days_from_civil(1969, 12, 31), -1);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = super::civil_from_days(days);
            assert_eq!(super::days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn weekdays() {
        assert_eq!(super::weekday(0), 4); // 1970-01-01, Thursday
        assert_eq!(super::weekday(-1), 3);
        assert_eq!(super::weekday(super::days_from_civil(2026, 1, 1)), 4);
        assert_eq!(super::weekday(super::days_from_civil(2019, 5, 1)), 3);
        assert_eq!(super::weekday(super::days_from_civil(2000, 1, 1)), 6);
        assert_eq!(super::weekday(super::days_from_civil(2024, 2, 11)), 0);
    }

    #[test]
    fn month_lengths() {
        assert_eq!(super::days_in_month(2024, 2), 29);
        assert_eq!(super::days_in_month(2100, 2), 28);
        assert_eq!(super::days_in_month(2000, 2), 29);
        assert_eq!(super::days_in_month(2025, 4), 30);
        assert_eq!(super::days_in_month(2025, 13), 0);
    }
}
