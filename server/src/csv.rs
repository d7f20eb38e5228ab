//! A small RFC 4180 CSV reader for imports: quoted fields, doubled quotes,
//! CRLF or LF, a UTF-8 byte-order mark. Errors name the line.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
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
}
