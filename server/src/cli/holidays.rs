//! `tsunagu holidays YEAR`: the Japanese public holidays of a year, as the
//! PBX computes them for its schedules (see [`crate::holidays`]).

use crate::holidays::{holidays as holidays_of, Holiday, HolidayError};
use crate::server::BoxError;
use clap::{Args, ValueEnum};

#[derive(Args, Debug)]
pub struct HolidaysArgs {
    /// The year (1980 to 2099).
    pub year: i32,
    /// Only the names in this language (default: both, Japanese first).
    #[arg(long, value_enum)]
    pub lang: Option<Lang>,
    /// CSV with a header (date,name_ja,name_en, or the --lang column only)
    /// instead of tab-separated lines.
    #[arg(long)]
    pub csv: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

pub async fn holidays(args: HolidaysArgs) -> Result<(), BoxError> {
    print!("{}", render(&args)?);
    Ok(())
}

/// The command's output: `2026-01-01\t元日\tNew Year's Day` lines, or CSV
/// records (CRLF-terminated, as every CSV the PBX writes).
fn render(args: &HolidaysArgs) -> Result<String, HolidayError> {
    let list = holidays_of(args.year)?;
    let columns = |h: &Holiday| -> Vec<String> {
        let mut c = vec![h.date.to_string()];
        match args.lang {
            Some(Lang::Ja) => c.push(h.name_ja.into()),
            Some(Lang::En) => c.push(h.name_en.into()),
            None => c.extend([h.name_ja.into(), h.name_en.into()]),
        }
        c
    };
    let mut out = String::new();
    if args.csv {
        let header: &[&str] = match args.lang {
            Some(Lang::Ja) => &["date", "name_ja"],
            Some(Lang::En) => &["date", "name_en"],
            None => &["date", "name_ja", "name_en"],
        };
        crate::csv::write_row(&mut out, header);
        for h in &list {
            let c = columns(h);
            crate::csv::write_row(&mut out, &c.iter().map(String::as_str).collect::<Vec<_>>());
        }
    } else {
        for h in &list {
            out.push_str(&columns(h).join("\t"));
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: HolidaysArgs,
    }

    fn parse(argv: &[&str]) -> Result<HolidaysArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("holidays").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn parses_arguments() {
        let a = parse(&["2026"]).unwrap();
        assert_eq!((a.year, a.lang, a.csv), (2026, None, false));
        let a = parse(&["2026", "--lang", "en", "--csv"]).unwrap();
        assert_eq!((a.year, a.lang, a.csv), (2026, Some(Lang::En), true));
        assert_eq!(parse(&["--lang", "ja", "2019"]).unwrap().lang, Some(Lang::Ja));
        assert!(parse(&[]).is_err());
        assert!(parse(&["twenty"]).is_err());
        assert!(parse(&["2026", "--lang", "fr"]).is_err());
    }

    #[test]
    fn tab_separated_lines() {
        let out = render(&parse(&["2026"]).unwrap()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 18);
        assert_eq!(lines[0], "2026-01-01\t元日\tNew Year's Day");
        assert!(lines.contains(&"2026-09-22\t国民の休日\tCitizens' Holiday"), "{out}");
        assert_eq!(lines[17], "2026-11-23\t勤労感謝の日\tLabor Thanksgiving Day");
        let ja = render(&parse(&["2026", "--lang", "ja"]).unwrap()).unwrap();
        assert_eq!(ja.lines().next(), Some("2026-01-01\t元日"));
        let en = render(&parse(&["2026", "--lang", "en"]).unwrap()).unwrap();
        assert_eq!(en.lines().nth(4), Some("2026-03-20\tVernal Equinox Day"));
    }

    #[test]
    fn csv_output() {
        let out = render(&parse(&["2026", "--csv"]).unwrap()).unwrap();
        assert!(out.starts_with("date,name_ja,name_en\r\n2026-01-01,元日,New Year's Day\r\n"), "{out}");
        assert_eq!(out.lines().count(), 19);
        let en = render(&parse(&["2026", "--csv", "--lang", "en"]).unwrap()).unwrap();
        assert!(en.starts_with("date,name_en\r\n2026-01-01,New Year's Day\r\n"), "{en}");
    }

    #[test]
    fn year_out_of_range() {
        let err = render(&parse(&["2100"]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("2100"), "{err}");
        assert!(render(&parse(&["1979", "--csv"]).unwrap()).is_err());
    }
}
