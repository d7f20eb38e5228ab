//! A small RFC 4180 CSV reader and writer for imports and exports: quoted
//! fields, doubled quotes, CRLF or LF, a UTF-8 byte-order mark. Errors name
//! the line.
//!
//! Files come from Excel more often than not, and Japanese Excel saves "CSV"
//! as Shift_JIS (Windows-31J) unless told "CSV UTF-8", so [`decode`] takes
//! either; exports are UTF-8 with a byte-order mark ([`BOM`]), the one form
//! every Excel opens as UTF-8 rather than guessing the ANSI code page.

use std::fmt;

/// A CSV error. `line` is the 1-based line it was found on, or 0 when it is
/// about the file as a whole (its encoding).
#[derive(Debug, PartialEq, Eq)]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for CsvError {}

/// The UTF-8 byte-order mark that exports start with, so Excel reads them as
/// UTF-8 (without it, Japanese Excel decodes the file as Shift_JIS).
pub const BOM: &str = "\u{feff}";

/// The text of an uploaded file: UTF-8 (with or without a byte-order mark,
/// which is dropped), else Shift_JIS as Japanese Excel writes it.
///
/// UTF-8 is tried first and wins whenever the bytes are valid UTF-8 (pure
/// ASCII included): multi-byte UTF-8 text is practically never also
/// meaningful Shift_JIS, while the reverse guess would garble every UTF-8
/// file. `encoding_rs::SHIFT_JIS` is the WHATWG Shift_JIS, which is
/// Windows-31J (the NEC and IBM extensions: ①, ㈱, 髙 ...), what Excel
/// actually writes. Bytes that are neither are refused rather than decoded
/// with replacement characters, so an import never stores mojibake.
pub fn decode(bytes: &[u8]) -> Result<String, CsvError> {
    let whole = |message: &str| CsvError { line: 0, message: message.into() };
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        // Excel's "Unicode text" is UTF-16 and tab-separated: say what to do.
        return Err(whole("the file is UTF-16 (Excel \"Unicode text\"); save it as \"CSV UTF-8\" or \"CSV\""));
    }
    // A NUL is in no text file: this is a binary (an .xlsx is a zip, and
    // its bytes can even pass for Shift_JIS, whose bytes below 0x80 are all
    // valid) or UTF-16 without a byte-order mark.
    if bytes.contains(&0) {
        return Err(whole("the file is neither UTF-8 nor Shift_JIS text (it has NUL bytes: an Excel workbook?); save it from Excel as \"CSV UTF-8\""));
    }
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8(rest.to_vec())
            .map_err(|_| whole("the file is neither UTF-8 nor Shift_JIS text (it starts with a UTF-8 byte-order mark, then bytes that are not UTF-8)"));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    match encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Ok(text.into_owned()),
        None => Err(whole("the file is neither UTF-8 nor Shift_JIS text; save it from Excel as \"CSV UTF-8\"")),
    }
}

/// Appends one CSV record to `out`, ending it with CRLF (RFC 4180, and what
/// Excel writes).
///
/// A field is quoted when it holds a comma, a quote (doubled), CR or LF.
/// Every field first goes through [`guard_formula`]: exports end up opened in
/// Excel, which runs a cell starting with `=`, `+`, `-` or `@` as a formula
/// (CSV or "formula" injection: a phonebook name like `=HYPERLINK(...)` or
/// `=cmd|' /C calc'!A0` typed by one user would run on the admin's machine).
pub fn write_row(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let field = guard_formula(field);
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            for c in field.chars() {
                if c == '"' {
                    out.push('"');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}

/// The field as written to an export: with a leading `'` when a spreadsheet
/// would take it for a formula, which makes Excel show it as text (OWASP's
/// advice for CSV injection). Triggers are `=`, `+`, `-`, `@`, and tab and CR
/// (which some spreadsheets skip before looking for one of those).
///
/// A plain international phone number such as `+81312345678` (`+` and only
/// digits) is left alone: it cannot run anything, and a PBX export is full
/// of them, where a stray `'` would break re-imports into phones and other
/// systems. (Excel shows it as a number; the leading `+` is then a sign.)
pub fn guard_formula(field: &str) -> std::borrow::Cow<'_, str> {
    let Some(first) = field.chars().next() else { return field.into() };
    let is_phone_number = first == '+' && field.len() > 1 && field[1..].bytes().all(|b| b.is_ascii_digit());
    if matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r') && !is_phone_number {
        format!("'{field}").into()
    } else {
        field.into()
    }
}

/// Undoes [`guard_formula`] on an imported field, so an export read back in
/// gives the same values: a `'` followed by a formula trigger is dropped.
pub fn unguard_formula(field: &str) -> &str {
    match field.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => field,
    }
}

/// Rows of fields, each with the line number it started on (1-based).
pub fn parse(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut field = String::new();
    let mut fields = Vec::new();
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut field_started = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                in_quotes = true;
                field_started = true;
            }
            '"' => return Err(CsvError { line, message: "quote inside an unquoted field".into() }),
            ',' => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    rows.push((row_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                row_line = line;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(CsvError { line: row_line, message: "unterminated quoted field".into() });
    }
    if field_started || !fields.is_empty() {
        fields.push(field);
        rows.push((row_line, fields));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_bom_and_line_numbers() {
        let rows = parse("\u{feff}a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\n3,\"multi\nline\"\n4,z").unwrap();
        assert_eq!(rows[0], (1, vec!["a".into(), "b".into()]));
        assert_eq!(rows[1], (2, vec!["x,1".into(), "say \"hi\"".into()]));
        assert_eq!(rows[2], (4, vec!["3".into(), "multi\nline".into()]));
        assert_eq!(rows[3], (6, vec!["4".into(), "z".into()]));
    }

    #[test]
    fn broken_quotes_are_reported() {
        assert_eq!(parse("a,\"b\n").unwrap_err().line, 1);
        assert_eq!(parse("a\nb\"c\n").unwrap_err().line, 2);
    }

    #[test]
    fn shift_jis_is_decoded() {
        let text = "名前,フリガナ,電話番号\r\n山田 太郎,ﾔﾏﾀﾞ ﾀﾛｳ,03-1234-5678\r\n髙橋①,タカハシ,+81312345678\r\n";
        let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err(), "the test needs bytes that are not UTF-8");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded, text);
        let rows = parse(&decoded).unwrap();
        assert_eq!(rows[1].1, ["山田 太郎", "ﾔﾏﾀﾞ ﾀﾛｳ", "03-1234-5678"]);
        assert_eq!(rows[2].1[0], "髙橋①");
    }

    #[test]
    fn utf8_wins_and_bom_is_stripped() {
        assert_eq!(decode(b"name,number\r\n").unwrap(), "name,number\r\n");
        assert_eq!(decode("\u{feff}山田,201".as_bytes()).unwrap(), "山田,201");
        assert_eq!(decode("山田,201".as_bytes()).unwrap(), "山田,201");
        // Valid as UTF-8 and as Shift_JIS alike: UTF-8 wins.
        let both = "é".as_bytes();
        assert!(encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(both).is_some());
        assert_eq!(decode(both).unwrap(), "é");
        assert_eq!(decode(b"").unwrap(), "");
    }

    #[test]
    fn invalid_bytes_are_refused() {
        for bytes in [&b"a,\xFF\xFD\r\n"[..], b"\x82", b"PK\x03\x04\x00\x00\xB0", b"n\x00a\x00", b"\xEF\xBB\xBFa\xFF"] {
            let err = decode(bytes).unwrap_err();
            assert_eq!(err.line, 0);
            assert!(err.to_string().contains("neither UTF-8 nor Shift_JIS"), "{err}");
        }
        assert!(decode(b"\x81\x40").is_ok(), "a Shift_JIS ideographic space");
        let err = decode(b"\xFF\xFEn\x00").unwrap_err();
        assert!(err.to_string().contains("UTF-16"), "{err}");
        assert!(!err.to_string().starts_with("line"));
    }

    #[test]
    fn writer_quotes_and_round_trips() {
        let rows: Vec<Vec<&str>> = vec![
            vec!["name", "kana", "number", "note"],
            vec!["山田, 太郎", "ヤマダ", "+81312345678", "says \"hi\""],
            vec!["multi\nline", "cr\rhere", "0312345678", ""],
            vec!["", "", "", "crlf\r\nend"],
        ];
        let mut out = String::from(BOM);
        for row in &rows {
            write_row(&mut out, row);
        }
        assert!(out.starts_with(
            "\u{feff}name,kana,number,note\r\n\"山田, 太郎\",ヤマダ,+81312345678,\"says \"\"hi\"\"\"\r\n"
        ));
        let parsed: Vec<Vec<String>> = parse(&out).unwrap().into_iter().map(|(_, f)| f).collect();
        assert_eq!(parsed, rows);
    }

    #[test]
    fn formulas_are_defused_but_phone_numbers_kept() {
        let mut out = String::new();
        write_row(&mut out, &["=1+2", "+81312345678", "+81-3", "-5", "@SUM(A1)", "\tx", "+", "a=b", "'x"]);
        assert_eq!(out, "'=1+2,+81312345678,'+81-3,'-5,'@SUM(A1),'\tx,'+,a=b,'x\r\n");
        let mut out = String::new();
        write_row(&mut out, &["=HYPERLINK(\"http://x\",\"y\")", "\rz"]);
        assert_eq!(out, "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",\"'\rz\"\r\n");
        // Reading an export back gives the original values.
        let fields = &parse(&out).unwrap()[0].1;
        assert_eq!(unguard_formula(&fields[0]), "=HYPERLINK(\"http://x\",\"y\")");
        assert_eq!(unguard_formula(&fields[1]), "\rz");
        assert_eq!(unguard_formula("'x"), "'x");
        assert_eq!(unguard_formula("+81312345678"), "+81312345678");
    }
}
