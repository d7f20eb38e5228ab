//! The shared phonebook: the company's contacts that every user and desk
//! phone can search, edited one by one or replaced whole by a CSV import.
//!
//! Rows live in the `phonebook` table; `meta.phonebook_version` counts
//! changes, and every row carries the version of its last change, so a
//! client that holds a copy asks for what changed since its version
//! ([`Phonebook::since`]) instead of the whole book. A removal leaves a
//! tombstone (`deleted = 1`) for those deltas to report.
//!
//! Searches run over an in-memory index of pre-normalised strings (a linear
//! scan: about 100,000 entries take a few milliseconds). Other processes
//! (the CLI) may write to the same database, so each search first reads the
//! stored version (one primary-key SELECT) and brings the index up to date
//! when it differs, from a delta when it can.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::csv;

/// Longest name, kana and department, in characters.
pub const MAX_NAME: usize = 100;
pub const MAX_KANA: usize = 100;
pub const MAX_DEPARTMENT: usize = 100;
/// Longest note, in characters.
pub const MAX_NOTE: usize = 500;
/// Fewest and most digits of a number (an extension has 2 or more; E.164
/// allows 15, and some carriers' prefixes add a few).
pub const MIN_DIGITS: usize = 2;
pub const MAX_DIGITS: usize = 20;
/// Most entries one import may hold; the search index is sized for this.
pub const MAX_IMPORT_ROWS: usize = 100_000;

/// The CSV header of imports and exports, in this order.
pub const CSV_COLUMNS: [&str; 5] = ["name", "kana", "number", "department", "note"];

const VERSION_KEY: &str = "phonebook_version";
/// Clients whose version is below this must take a full copy: an import
/// replaces the book by deleting every row outright (no tombstones, which
/// repeated imports would pile up by the hundred thousand), so deltas from
/// before it cannot say what went.
const FULL_BEFORE_KEY: &str = "phonebook_full_before";
/// Rows per INSERT during an import (6 parameters each, well under SQLite's
/// 32,766), far quicker than one statement per row.
const INSERT_BATCH: usize = 500;

/// A phonebook entry as stored. `number` holds digits only, with a leading
/// `+` for an international number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: i64,
    pub name: String,
    pub kana: String,
    pub number: String,
    pub department: String,
    pub note: String,
}

/// An entry to add, or an entry's new values. [`NewEntry::normalize`] gives
/// the form that is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    pub name: String,
    #[serde(default)]
    pub kana: String,
    pub number: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub note: String,
}

/// Why an entry was refused; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("name is required")]
    NameRequired,
    #[error("number is required")]
    NumberRequired,
    #[error("{field} is too long: {len} characters, at most {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} must not contain control characters (line breaks, tabs)")]
    ControlCharacter { field: &'static str },
    #[error("number {number:?} may hold only digits, a leading '+', hyphens, spaces and parentheses")]
    NumberCharacters { number: String },
    #[error("number {number:?} must have 2 to 20 digits (it has {digits})")]
    NumberLength { number: String, digits: usize },
}

/// One bad row of an import. `row` is the CSV line it starts on (the header
/// is row 1), or the 1-based position in the list given to
/// [`Phonebook::replace_all`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub row: usize,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PhonebookError {
    #[error(transparent)]
    Invalid(#[from] EntryError),
    #[error("no phonebook entry {0}")]
    NotFound(i64),
    /// An import refused whole: every bad row, in order.
    #[error("{}", rows_summary(.0))]
    Rows(Vec<RowError>),
    /// The uploaded file is not CSV text (its encoding, or broken quotes).
    #[error(transparent)]
    Csv(#[from] csv::CsvError),
    #[error("phonebook database: {0}")]
    Db(#[from] sqlx::Error),
}

fn rows_summary(rows: &[RowError]) -> String {
    match rows {
        [] => "no rows".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more bad rows)", rest.len()),
    }
}

/// What changed since a client's version. With `full`, `entries` is the
/// whole phonebook and the client replaces its copy (it had none, it is
/// from before an import, or from another database); otherwise `entries`
/// are the entries added or changed after that version and `deleted` the ids
/// removed after it. `version` is what the client asks with next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub version: i64,
    pub full: bool,
    pub entries: Vec<Entry>,
    pub deleted: Vec<i64>,
}

/// The outcome of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The phonebook version the import made.
    pub version: i64,
    /// Entries the phonebook now holds.
    pub entries: usize,
}

impl NewEntry {
    /// The entry as stored: fields trimmed, the number reduced to its digits
    /// (and a leading `+`); or the first thing wrong with it.
    ///
    /// Numbers are typed every which way ("03-1234-5678", "(03) 1234 5678",
    /// full-width "０３－１２３４", an IME's "ー" for a hyphen); phones dial
    /// and match digits, so only those are kept.
    pub fn normalize(&self) -> Result<NewEntry, EntryError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(EntryError::NameRequired);
        }
        let name = text_field("name", name, MAX_NAME, false)?;
        let kana = text_field("kana", self.kana.trim(), MAX_KANA, false)?;
        let department = text_field("department", self.department.trim(), MAX_DEPARTMENT, false)?;
        // A note may run over lines (it is never shown on a phone).
        let note = text_field("note", self.note.trim(), MAX_NOTE, true)?;
        let number = normalize_number(&self.number)?;
        Ok(NewEntry { name, kana, number, department, note })
    }
}

fn text_field(field: &'static str, value: &str, max: usize, multiline: bool) -> Result<String, EntryError> {
    let len = value.chars().count();
    if len > max {
        return Err(EntryError::TooLong { field, len, max });
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(EntryError::ControlCharacter { field });
    }
    Ok(value.to_owned())
}

fn normalize_number(raw: &str) -> Result<String, EntryError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(EntryError::NumberRequired);
    }
    let bad = || EntryError::NumberCharacters { number: raw.to_owned() };
    let mut out = String::with_capacity(raw.len());
    for c in fold(raw).chars() {
        match c {
            '0'..='9' => out.push(c),
            // Only before any digit.
            '+' if out.is_empty() => out.push('+'),
            // Separators: hyphen, space, parentheses, the Unicode dashes and
            // minus, and the long-vowel mark an IME gives for a hyphen.
            ' ' | '-' | '(' | ')' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30fc}' => {}
            _ => return Err(bad()),
        }
    }
    let digits = out.trim_start_matches('+').len();
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
        return Err(EntryError::NumberLength { number: raw.to_owned(), digits });
    }
    Ok(out)
}

/// Hand memory freed by a whole rebuild back to the system. glibc keeps
/// freed heap in per-thread arenas; after a 100,000-entry import (the CSV,
/// its rows, the old index) that was over 200 MiB that the server kept
/// but no longer used.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it takes
    // no pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The shared phonebook over the server's SQLite pool.
pub struct Phonebook {
    pool: SqlitePool,
    index: RwLock<Arc<Index>>,
    /// One refresh at a time: concurrent searches that find the index stale
    /// wait for the first one's work instead of each loading the book.
    refresh: tokio::sync::Mutex<()>,
}

impl Phonebook {
    /// The phonebook in `pool`'s database, which has the `phonebook` table
    /// and `meta`. Nothing is read until the first search.
    pub fn new(pool: SqlitePool) -> Phonebook {
        Phonebook { pool, index: RwLock::new(Arc::new(Index::empty())), refresh: tokio::sync::Mutex::new(()) }
    }

    /// The current phonebook version (0 before the first change).
    pub async fn version(&self) -> Result<i64, PhonebookError> {
        Ok(meta_i64(&self.pool, VERSION_KEY).await?)
    }

    /// One live entry.
    pub async fn get(&self, id: i64) -> Result<Option<Entry>, PhonebookError> {
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM phonebook WHERE id = ? AND deleted = 0"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(entry_from_row).transpose()?)
    }

    /// Adds an entry (normalised; see [`NewEntry::normalize`]).
    pub async fn add(&self, entry: NewEntry) -> Result<Entry, PhonebookError> {
        let e = entry.normalize()?;
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO phonebook (name, kana, number, department, note, version) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&e.name)
        .bind(&e.kana)
        .bind(&e.number)
        .bind(&e.department)
        .bind(&e.note)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(e.with_id(id))
    }

    /// Replaces the values of entry `id`; [`PhonebookError::NotFound`] when
    /// there is no such live entry.
    pub async fn update(&self, id: i64, entry: NewEntry) -> Result<Entry, PhonebookError> {
        let e = entry.normalize()?;
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE phonebook SET name = ?, kana = ?, number = ?, department = ?, note = ?, version = ? \
             WHERE id = ? AND deleted = 0",
        )
        .bind(&e.name)
        .bind(&e.kana)
        .bind(&e.number)
        .bind(&e.department)
        .bind(&e.note)
        .bind(version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls the version bump back.
            return Err(PhonebookError::NotFound(id));
        }
        tx.commit().await?;
        Ok(e.with_id(id))
    }

    /// Removes entry `id`, leaving a tombstone for deltas;
    /// [`PhonebookError::NotFound`] when there is no such live entry.
    pub async fn remove(&self, id: i64) -> Result<(), PhonebookError> {
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx).await?;
        // The tombstone keeps only the id: a removed contact's name and
        // number are personal data with no reason to stay.
        let done = sqlx::query(
            "UPDATE phonebook SET name = '', kana = '', number = '', department = '', note = '', \
             version = ?, deleted = 1 WHERE id = ? AND deleted = 0",
        )
        .bind(version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(PhonebookError::NotFound(id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the whole phonebook with `entries`, in one transaction: all
    /// of them or, when any is invalid, none
    /// ([`PhonebookError::Rows`] lists every bad one by its 1-based
    /// position). Returns the new version.
    ///
    /// The old rows, tombstones included, are deleted outright and clients
    /// from before this version get a full copy from [`Phonebook::since`]:
    /// a delta of a hundred thousand tombstones plus as many new entries
    /// would be twice the size of the copy, and the tombstones would pile up
    /// with every import.
    pub async fn replace_all(&self, entries: Vec<NewEntry>) -> Result<i64, PhonebookError> {
        let mut good = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.normalize() {
                Ok(e) => good.push(e),
                Err(err) => bad.push(RowError { row: i + 1, message: err.to_string() }),
            }
        }
        if !bad.is_empty() {
            return Err(PhonebookError::Rows(bad));
        }
        self.replace_normalized(&good).await
    }

    async fn replace_normalized(&self, entries: &[NewEntry]) -> Result<i64, PhonebookError> {
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx).await?;
        sqlx::query("DELETE FROM phonebook").execute(&mut *tx).await?;
        for chunk in entries.chunks(INSERT_BATCH) {
            let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO phonebook (name, kana, number, department, note, version) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(&e.name)
                    .push_bind(&e.kana)
                    .push_bind(&e.number)
                    .push_bind(&e.department)
                    .push_bind(&e.note)
                    .push_bind(version);
            });
            insert.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(FULL_BEFORE_KEY)
        .bind(version.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Build the index now, so the importer waits for it rather than the
        // next person to search. The import stands either way.
        if let Err(e) = self.index().await {
            tracing::warn!("phonebook: index after import: {e}");
        }
        Ok(version)
    }

    /// Checks CSV rows (as [`csv::parse`] gives them) for an import: the
    /// first row is the header, naming the columns `name` and `number` and,
    /// if wanted, `kana`, `department` and `note`, in any order (the
    /// Japanese headings 名前, フリガナ, 電話番号, 部署 and 備考 are taken
    /// too). Returns the normalised entries, or every bad row with its line
    /// number (the header is row 1). Rows with no value at all are skipped:
    /// Excel writes them for cells that were only formatted.
    pub fn validate_rows(rows: &[(usize, Vec<String>)]) -> Result<Vec<NewEntry>, Vec<RowError>> {
        let expected = "the first row must be the header, e.g. name,kana,number,department,note";
        let Some(((header_row, header), data)) = rows.split_first() else {
            return Err(vec![RowError { row: 1, message: format!("the file is empty: {expected}") }]);
        };
        let header_row = *header_row;
        let header_error = |message: String| RowError { row: header_row, message };

        // Which field of a row goes to which column (0 = name ... 4 = note).
        let mut columns: [Option<usize>; 5] = [None; 5];
        let mut errors = Vec::new();
        for (i, heading) in header.iter().enumerate() {
            let heading = heading.trim();
            if heading.is_empty() {
                continue; // A blank heading is fine while nothing is under it.
            }
            match column_of(heading) {
                Some(c) if columns[c].is_some() => {
                    errors.push(header_error(format!("column {:?} appears twice", CSV_COLUMNS[c])));
                }
                Some(c) => columns[c] = Some(i),
                None => errors.push(header_error(format!(
                    "unknown column {heading:?}; the columns are name, kana, number, department and note"
                ))),
            }
        }
        for required in [0, 2] {
            if columns[required].is_none() {
                errors.push(header_error(format!("the column {:?} is missing; {expected}", CSV_COLUMNS[required])));
            }
        }
        if !errors.is_empty() {
            // Rows are not worth checking against a header that is wrong.
            return Err(errors);
        }
        if data.len() > MAX_IMPORT_ROWS {
            return Err(vec![header_error(format!(
                "the file has {} rows; an import takes at most {MAX_IMPORT_ROWS}",
                data.len()
            ))]);
        }

        let mapped: HashSet<usize> = columns.iter().flatten().copied().collect();
        let mut entries = Vec::with_capacity(data.len());
        for (row, fields) in data {
            if fields.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            if let Some(i) = (0..fields.len()).find(|i| !mapped.contains(i) && !fields[*i].trim().is_empty()) {
                errors.push(RowError {
                    row: *row,
                    message: format!("field {} has a value but its column has no heading", i + 1),
                });
                continue;
            }
            // Strip the `'` an export put before formula-like values, so
            // an export imported again gives the same phonebook.
            let get = |c: usize| {
                columns[c].and_then(|i| fields.get(i)).map(|f| csv::unguard_formula(f).to_owned()).unwrap_or_default()
            };
            let entry = NewEntry { name: get(0), kana: get(1), number: get(2), department: get(3), note: get(4) };
            match entry.normalize() {
                Ok(e) => entries.push(e),
                Err(e) => errors.push(RowError { row: *row, message: e.to_string() }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if entries.is_empty() {
            // A header-only file (a template) would otherwise empty the
            // phonebook without a word.
            return Err(vec![header_error("the file has a header but no entries".into())]);
        }
        Ok(entries)
    }

    /// An import from parsed CSV rows: [`Phonebook::validate_rows`], then
    /// [`Phonebook::replace_all`]; all or nothing.
    pub async fn import_rows(&self, rows: &[(usize, Vec<String>)]) -> Result<ImportReport, PhonebookError> {
        let entries = Self::validate_rows(rows).map_err(PhonebookError::Rows)?;
        let version = self.replace_normalized(&entries).await?;
        Ok(ImportReport { version, entries: entries.len() })
    }

    /// An import from an uploaded file: UTF-8 or Shift_JIS CSV.
    pub async fn import_csv(&self, bytes: &[u8]) -> Result<ImportReport, PhonebookError> {
        let text = csv::decode(bytes)?;
        let rows = csv::parse(&text)?;
        self.import_rows(&rows).await
    }

    /// The whole phonebook as CSV (UTF-8 with a byte-order mark, for Excel),
    /// sorted like searches, in the columns an import takes.
    pub async fn export_csv(&self) -> Result<String, PhonebookError> {
        let index = self.index().await?;
        let mut out = String::with_capacity(csv::BOM.len() + 64 * (index.items.len() + 1));
        out.push_str(csv::BOM);
        csv::write_row(&mut out, &CSV_COLUMNS);
        for item in &index.items {
            let e = &item.entry;
            csv::write_row(&mut out, &[&e.name, &e.kana, &e.number, &e.department, &e.note]);
        }
        Ok(out)
    }

    /// Entries matching `query`, sorted by kana then name, at most `limit`.
    ///
    /// Each word of the query must appear, ignoring case, full-width and
    /// half-width forms, hiragana versus katakana and spaces, in the name,
    /// kana or department; a word of digits (hyphens and the like allowed)
    /// also matches a number containing those digits, and so does the whole
    /// query when it is a number with spaces ("03 1234"). An empty query
    /// lists the book.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<Entry>, PhonebookError> {
        let index = self.index().await?;
        Ok(index.search(&Query::new(query), limit))
    }

    /// What changed after version `since` (see [`Delta`]); 0 for everything.
    pub async fn since(&self, since: i64) -> Result<Delta, PhonebookError> {
        // One read transaction, so the version and the rows agree.
        let mut tx = self.pool.begin().await?;
        let version = meta_i64(&mut *tx, VERSION_KEY).await?;
        let full_before = meta_i64(&mut *tx, FULL_BEFORE_KEY).await?;
        // A client ahead of us has a copy from another (or a restored)
        // database: it starts over too.
        let full = since <= 0 || since < full_before || since > version;
        let delta = if full {
            let rows = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM phonebook WHERE deleted = 0 ORDER BY id"))
                .fetch_all(&mut *tx)
                .await?;
            Delta {
                version,
                full,
                entries: rows.iter().map(entry_from_row).collect::<Result<_, _>>()?,
                deleted: vec![],
            }
        } else {
            // No ORDER BY: SQLite would serve it by walking the whole table
            // in id order instead of using the version index.
            let rows = sqlx::query(&format!("SELECT {ENTRY_COLUMNS}, deleted FROM phonebook WHERE version > ?"))
                .bind(since)
                .fetch_all(&mut *tx)
                .await?;
            let mut delta = Delta { version, full, entries: vec![], deleted: vec![] };
            for row in &rows {
                if row.try_get::<i64, _>("deleted")? != 0 {
                    delta.deleted.push(row.try_get("id")?);
                } else {
                    delta.entries.push(entry_from_row(row)?);
                }
            }
            delta.entries.sort_by_key(|e| e.id);
            delta.deleted.sort_unstable();
            delta
        };
        tx.commit().await?;
        Ok(delta)
    }

    /// The search index, brought up to date with the database first.
    async fn index(&self) -> Result<Arc<Index>, PhonebookError> {
        let stored = self.version().await?;
        let current = self.index.read().unwrap_or_else(|e| e.into_inner()).clone();
        if current.version == stored {
            return Ok(current);
        }
        let _refreshing = self.refresh.lock().await;
        // Another search may have refreshed it while this one waited.
        let current = self.index.read().unwrap_or_else(|e| e.into_inner()).clone();
        if current.version == stored {
            return Ok(current);
        }
        let delta = self.since(current.version).await?;
        let full = delta.full;
        let fresh =
            Arc::new(if full { Index::build(delta.version, delta.entries) } else { current.patch(delta) });
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        drop(current);
        if full {
            release_freed_memory();
        }
        Ok(fresh)
    }
}

impl NewEntry {
    fn with_id(self, id: i64) -> Entry {
        Entry {
            id,
            name: self.name,
            kana: self.kana,
            number: self.number,
            department: self.department,
            note: self.note,
        }
    }
}

/// Maps a CSV heading to its column (an index into [`CSV_COLUMNS`]).
fn column_of(heading: &str) -> Option<usize> {
    let heading = fold(heading);
    Some(match heading.as_str() {
        "name" | "名前" | "氏名" => 0,
        "kana" | "フリガナ" | "ヨミ" | "ヨミガナ" | "カナ" => 1,
        "number" | "電話番号" | "番号" => 2,
        "department" | "部署" | "所属" => 3,
        "note" | "備考" | "メモ" => 4,
        _ => return None,
    })
}

const ENTRY_COLUMNS: &str = "id, name, kana, number, department, note";

fn entry_from_row(row: &SqliteRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kana: row.try_get("kana")?,
        number: row.try_get("number")?,
        department: row.try_get("department")?,
        note: row.try_get("note")?,
    })
}

/// An integer kept in `meta` (stored as text), 0 when absent.
async fn meta_i64<'e, E: sqlx::SqliteExecutor<'e>>(db: E, key: &str) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(db)
        .await?;
    Ok(v.unwrap_or(0))
}

/// Counts a change and returns the new version. Being the first statement
/// of each write transaction, it also takes SQLite's write lock at once, so
/// two writers queue rather than deadlock upgrading read locks.
async fn bump_version(tx: &mut Transaction<'_, Sqlite>) -> Result<i64, sqlx::Error> {
    // An upsert, so a database without the migration's row still works.
    sqlx::query_scalar(
        "INSERT INTO meta (key, value) VALUES (?, '1') \
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 \
         RETURNING CAST(value AS INTEGER)",
    )
    .bind(VERSION_KEY)
    .fetch_one(&mut **tx)
    .await
}

/// The remote phonebook that desk phones download, in Yealink's format
/// (which Fanvil, Grandstream's "Yealink-compatible" mode and others read
/// too): one `DirectoryEntry` per entry, in the order given.
pub fn to_xml(entries: &[Entry]) -> String {
    let mut out = String::with_capacity(80 + entries.len() * 96);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<YealinkIPPhoneDirectory>\n");
    for e in entries {
        out.push_str("<DirectoryEntry><Name>");
        xml_escape(&mut out, &e.name);
        out.push_str("</Name><Telephone>");
        xml_escape(&mut out, &e.number);
        out.push_str("</Telephone></DirectoryEntry>\n");
    }
    out.push_str("</YealinkIPPhoneDirectory>\n");
    out
}

/// Escapes text for XML element content or attributes. Control characters
/// other than tab and line breaks are not allowed in XML 1.0 at all and are
/// dropped (validation keeps them out of names and numbers anyway).
fn xml_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

/// Folds text for matching: full-width ASCII to ASCII and the ideographic
/// space to a space (as NFKC does), half-width katakana to full-width
/// (composing a following half-width voicing mark: ｶﾞ → ガ), hiragana to
/// katakana, then lower case. Japanese text mixes all of these: kana typed
/// in hiragana, kana columns from old systems in half-width katakana,
/// numbers and company names in full-width letters.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let u = c as u32;
        let c = match u {
            0xff01..=0xff5e => char::from_u32(u - 0xfee0).unwrap_or(c),
            0x3000 => ' ',
            0xff9e | 0xff9f => {
                let composed = out.chars().next_back().and_then(|prev| voiced(prev, u == 0xff9f));
                if let Some(composed) = composed {
                    out.pop();
                    out.push(composed);
                    continue;
                }
                HALF_WIDTH_KANA[(u - 0xff61) as usize]
            }
            0xff61..=0xff9d => HALF_WIDTH_KANA[(u - 0xff61) as usize],
            // ぁ..ゖ and ゝゞ sit 0x60 below their katakana.
            0x3041..=0x3096 | 0x309d | 0x309e => char::from_u32(u + 0x60).unwrap_or(c),
            _ => c,
        };
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Full-width forms of U+FF61..U+FF9F (｡ to ﾟ).
const HALF_WIDTH_KANA: [char; 63] = [
    '。', '「', '」', '、', '・', 'ヲ', 'ァ', 'ィ', 'ゥ', 'ェ', 'ォ', 'ャ', 'ュ', 'ョ', 'ッ', //
    'ー', 'ア', 'イ', 'ウ', 'エ', 'オ', 'カ', 'キ', 'ク', 'ケ', 'コ', 'サ', 'シ', 'ス', 'セ', 'ソ', //
    'タ', 'チ', 'ツ', 'テ', 'ト', 'ナ', 'ニ', 'ヌ', 'ネ', 'ノ', 'ハ', 'ヒ', 'フ', 'ヘ', 'ホ', 'マ', //
    'ミ', 'ム', 'メ', 'モ', 'ヤ', 'ユ', 'ヨ', 'ラ', 'リ', 'ル', 'レ', 'ロ', 'ワ', 'ン', '゛', '゜',
];

/// A katakana with a voicing mark (゛, or ゜ when `semi`): カ → ガ, ハ → パ.
fn voiced(base: char, semi: bool) -> Option<char> {
    let u = base as u32;
    let hagyo = matches!(u, 0x30cf | 0x30d2 | 0x30d5 | 0x30d8 | 0x30db); // ハヒフヘホ
    let v = if semi {
        if !hagyo {
            return None;
        }
        u + 2
    } else {
        match u {
            0x30a6 => 0x30f4, // ウ → ヴ
            // カキクケコサシスセソタチ: every other code point.
            0x30ab..=0x30c1 if u % 2 == 1 => u + 1,
            0x30c4 | 0x30c6 | 0x30c8 => u + 1, // ツテト
            _ if hagyo => u + 1,
            _ => return None,
        }
    };
    char::from_u32(v)
}

/// A character that may appear in a number as typed, besides digits.
fn is_number_punctuation(c: char) -> bool {
    matches!(c, '+' | '-' | ' ' | '(' | ')' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30fc}')
}

/// The digits of `folded` if it is a number as typed (digits and number
/// punctuation, at least one digit).
fn number_digits(folded: &str) -> Option<String> {
    if !folded.chars().all(|c| c.is_ascii_digit() || is_number_punctuation(c)) {
        return None;
    }
    let digits: String = folded.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// A parsed search query.
struct Query {
    words: Vec<Word>,
    /// The digits of the whole query when it is a number with spaces.
    number: Option<String>,
}

struct Word {
    text: String,
    digits: Option<String>,
}

impl Query {
    fn new(query: &str) -> Query {
        let folded: String = fold(query).chars().filter(|c| !c.is_control()).collect();
        let words = folded
            .split_whitespace()
            .map(|w| Word { text: w.to_owned(), digits: number_digits(w) })
            .collect::<Vec<_>>();
        let number = if words.len() > 1 { number_digits(folded.trim()) } else { None };
        Query { words, number }
    }

    /// Whether an item's haystack line matches. Digit forms are looked for
    /// in the whole line, so they find digits in a name ("会議室201") too.
    fn matches(&self, line: &str) -> bool {
        if self.number.as_ref().is_some_and(|n| line.contains(n.as_str())) {
            return true;
        }
        self.words
            .iter()
            .all(|w| line.contains(w.text.as_str()) || w.digits.as_ref().is_some_and(|d| line.contains(d.as_str())))
    }
}

/// An entry with its pre-folded search and sort strings.
struct Item {
    entry: Entry,
    /// Folded name, kana and department without spaces, split by U+0001
    /// (queries hold no control characters, so no match straddles two
    /// fields).
    text: String,
    /// The number's digits, without a `+`.
    digits: String,
    /// Sort keys: the folded kana (hiragana and katakana sort together) and
    /// name.
    kana_key: String,
    name_key: String,
}

impl Item {
    fn new(entry: Entry) -> Item {
        let squeeze = |s: &str| fold(s).chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let text = format!("{}\u{1}{}\u{1}{}", squeeze(&entry.name), squeeze(&entry.kana), squeeze(&entry.department));
        let digits = entry.number.chars().filter(char::is_ascii_digit).collect();
        Item { text, digits, kana_key: fold(&entry.kana), name_key: fold(&entry.name), entry }
    }

    /// By kana, then name; entries without kana after those with it.
    fn order(a: &Item, b: &Item) -> Ordering {
        (a.kana_key.is_empty(), &a.kana_key, &a.name_key, a.entry.id).cmp(&(
            b.kana_key.is_empty(),
            &b.kana_key,
            &b.name_key,
            b.entry.id,
        ))
    }
}

/// The live entries as of `version`, sorted by [`Item::order`], and their
/// search strings laid end to end.
///
/// Searches scan `haystack` rather than each item's own strings: one
/// contiguous buffer is read at memory speed, where a hundred thousand
/// separate allocations cost a cache miss or two each (a scan of 100,000
/// entries takes about 2 ms instead of 12 ms).
struct Index {
    version: i64,
    items: Vec<Arc<Item>>,
    /// Item i's line is `haystack[starts[i]..starts[i + 1]]`: its text, then
    /// U+0002, then its digits.
    haystack: String,
    starts: Vec<usize>,
}

impl Index {
    /// Before the first load: a version no database has, so the first
    /// search loads the book.
    fn empty() -> Index {
        Index::with_items(-1, Vec::new())
    }

    fn build(version: i64, entries: Vec<Entry>) -> Index {
        let mut items: Vec<Arc<Item>> = entries.into_iter().map(|e| Arc::new(Item::new(e))).collect();
        items.sort_by(|a, b| Item::order(a, b));
        Index::with_items(version, items)
    }

    /// The index of `items`, which are sorted.
    fn with_items(version: i64, items: Vec<Arc<Item>>) -> Index {
        let mut haystack = String::with_capacity(items.iter().map(|i| i.text.len() + i.digits.len() + 1).sum());
        let mut starts = Vec::with_capacity(items.len() + 1);
        for item in &items {
            starts.push(haystack.len());
            haystack.push_str(&item.text);
            haystack.push('\u{2}');
            haystack.push_str(&item.digits);
        }
        starts.push(haystack.len());
        Index { version, items, haystack, starts }
    }

    /// This index with a (not full) delta applied.
    fn patch(&self, delta: Delta) -> Index {
        let gone: HashSet<i64> = delta.entries.iter().map(|e| e.id).chain(delta.deleted.iter().copied()).collect();
        let mut items: Vec<Arc<Item>> = self.items.iter().filter(|i| !gone.contains(&i.entry.id)).cloned().collect();
        let fresh = delta.entries.into_iter().map(|e| Arc::new(Item::new(e)));
        if fresh.len() <= 100 {
            // The usual edit or two: insert in place, far cheaper than
            // sorting a hundred thousand items again.
            for item in fresh {
                let at = items.partition_point(|i| Item::order(i, &item) == Ordering::Less);
                items.insert(at, item);
            }
        } else {
            items.extend(fresh);
            items.sort_by(|a, b| Item::order(a, b));
        }
        Index::with_items(delta.version, items)
    }

    fn search(&self, query: &Query, limit: usize) -> Vec<Entry> {
        let lines = self.starts.windows(2).map(|w| &self.haystack[w[0]..w[1]]);
        lines
            .zip(&self.items)
            .filter(|(line, _)| query.matches(line))
            .take(limit)
            .map(|(_, i)| i.entry.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    /// A phonebook in a fresh in-memory database (one connection, kept open:
    /// each in-memory connection is a database of its own).
    async fn memory() -> Phonebook {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        // The server's own migrations: the tests run on the real schema.
        sqlx::migrate!("./migrations").run(&pool).await.unwrap();
        Phonebook::new(pool)
    }

    fn new(name: &str, kana: &str, number: &str, department: &str) -> NewEntry {
        NewEntry {
            name: name.into(),
            kana: kana.into(),
            number: number.into(),
            department: department.into(),
            note: String::new(),
        }
    }

    fn rows(text: &str) -> Vec<(usize, Vec<String>)> {
        csv::parse(text).unwrap()
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn entries_are_normalised_and_checked() {
        let e = new("  山田 太郎 ", " ヤマダ ", " 03-1234 (5678) ", "営業").normalize().unwrap();
        assert_eq!((e.name.as_str(), e.kana.as_str(), e.number.as_str()), ("山田 太郎", "ヤマダ", "0312345678"));
        assert_eq!(new("a", "", "+81 3-1234-5678", "").normalize().unwrap().number, "+81312345678");
        assert_eq!(new("a", "", "０３－１２３４ー５６７８", "").normalize().unwrap().number, "0312345678");
        assert_eq!(new("a", "", "20", "").normalize().unwrap().number, "20");

        let err = |e: NewEntry| e.normalize().unwrap_err();
        assert_eq!(err(new(" ", "", "201", "")), EntryError::NameRequired);
        assert_eq!(err(new("a", "", "  ", "")), EntryError::NumberRequired);
        assert!(matches!(err(new("a", "", "1", "")), EntryError::NumberLength { digits: 1, .. }));
        assert!(matches!(err(new("a", "", "+", "")), EntryError::NumberLength { digits: 0, .. }));
        assert!(matches!(err(new("a", "", &"1".repeat(21), "")), EntryError::NumberLength { digits: 21, .. }));
        for bad in ["12+3", "++12", "201#", "03.1234", "内線201"] {
            assert!(matches!(err(new("a", "", bad, "")), EntryError::NumberCharacters { .. }), "{bad}");
        }
        assert_eq!(
            err(new(&"あ".repeat(101), "", "201", "")),
            EntryError::TooLong { field: "name", len: 101, max: 100 }
        );
        assert!(new(&"あ".repeat(100), "", "201", "").normalize().is_ok());
        assert_eq!(
            err(new("a", "", "201", &"x".repeat(101))),
            EntryError::TooLong { field: "department", len: 101, max: 100 }
        );
        assert_eq!(err(new("a\nb", "", "201", "")), EntryError::ControlCharacter { field: "name" });
        let mut noted = new("a", "", "201", "");
        noted.note = "two\nlines".into();
        assert!(noted.normalize().is_ok());
        noted.note = "x".repeat(501);
        assert_eq!(noted.normalize().unwrap_err().to_string(), "note is too long: 501 characters, at most 500");
        assert_eq!(
            err(new("a", "", "201#", "")).to_string(),
            "number \"201#\" may hold only digits, a leading '+', hyphens, spaces and parentheses"
        );
    }

    #[test]
    fn folding() {
        assert_eq!(fold("やまだ"), "ヤマダ");
        assert_eq!(fold("ﾔﾏﾀﾞ ﾊﾟﾝ ｳﾞ ｶﾟ"), "ヤマダ パン ヴ カ゜");
        assert_eq!(fold("ﾞｱ"), "゛ア");
        assert_eq!(fold("ＡＢＣ１２３　Ｘ"), "abc123 x");
        assert_eq!(fold("Tsunagu株式会社"), "tsunagu株式会社");
        assert_eq!(fold("ガギグゲゴ"), "ガギグゲゴ");
        for (half, full) in
            [("ｶﾞｷﾞｸﾞｹﾞｺﾞｻﾞｼﾞｽﾞｾﾞｿﾞﾀﾞﾁﾞﾂﾞﾃﾞﾄﾞ", "ガギグゲゴザジズゼゾダヂヅデド"), ("ﾊﾞﾋﾞﾌﾞﾍﾞﾎﾞﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ", "バビブベボパピプペポ")]
        {
            assert_eq!(fold(half), full);
        }
        assert_eq!(fold("｡｢｣､･ｦｧｯｰﾝ"), "。「」、・ヲァッーン");
    }

    #[tokio::test]
    async fn add_update_remove_and_deltas() {
        let pb = memory().await;
        assert_eq!(pb.version().await.unwrap(), 0);
        let first = pb.since(0).await.unwrap();
        assert_eq!(first, Delta { version: 0, full: true, entries: vec![], deleted: vec![] });

        let a = pb.add(new("山田 太郎", "ヤマダ タロウ", "03-1234-5678", "営業")).await.unwrap();
        let b = pb.add(new("田中 花子", "タナカ ハナコ", "201", "総務")).await.unwrap();
        assert_eq!(a.number, "0312345678");
        assert_eq!(pb.version().await.unwrap(), 2);
        assert_eq!(pb.get(a.id).await.unwrap(), Some(a.clone()));

        let all = pb.since(0).await.unwrap();
        assert!(all.full);
        assert_eq!(all.entries, vec![a.clone(), b.clone()]);
        assert_eq!(all.version, 2);

        let a2 = pb.update(a.id, new("山田 太郎", "ヤマダ タロウ", "+81 3 1234 5678", "営業部")).await.unwrap();
        assert_eq!(a2.id, a.id);
        assert_eq!(a2.number, "+81312345678");
        pb.remove(b.id).await.unwrap();
        assert_eq!(pb.version().await.unwrap(), 4);
        assert_eq!(pb.get(b.id).await.unwrap(), None);

        let delta = pb.since(2).await.unwrap();
        assert_eq!(delta, Delta { version: 4, full: false, entries: vec![a2.clone()], deleted: vec![b.id] });
        let delta = pb.since(3).await.unwrap();
        assert_eq!((delta.entries.len(), delta.deleted.clone()), (0, vec![b.id]));
        let delta = pb.since(4).await.unwrap();
        assert_eq!(delta, Delta { version: 4, full: false, entries: vec![], deleted: vec![] });
        // A client from another database starts over.
        assert!(pb.since(99).await.unwrap().full);

        // Missing entries: nothing changes, not even the version.
        assert!(matches!(pb.remove(b.id).await, Err(PhonebookError::NotFound(id)) if id == b.id));
        assert!(matches!(pb.update(b.id, new("x", "", "201", "")).await, Err(PhonebookError::NotFound(_))));
        assert!(matches!(pb.add(new("", "", "201", "")).await, Err(PhonebookError::Invalid(EntryError::NameRequired))));
        assert_eq!(pb.version().await.unwrap(), 4);

        // Tombstones keep no personal data.
        let (name, number): (String, String) = sqlx::query_as("SELECT name, number FROM phonebook WHERE id = ?")
            .bind(b.id)
            .fetch_one(&pb.pool)
            .await
            .unwrap();
        assert_eq!((name.as_str(), number.as_str()), ("", ""));

        // Ids are never reused (AUTOINCREMENT): a phone's cached id stays
        // dead.
        let c = pb.add(new("c", "", "202", "")).await.unwrap();
        assert!(c.id > b.id);
    }

    #[tokio::test]
    async fn import_is_all_or_nothing_and_lists_every_bad_row() {
        let pb = memory().await;
        let kept = pb.add(new("残る人", "ノコル", "301", "")).await.unwrap();

        let bad = "name,kana,number,department,note\r\n\
                   山田 太郎,やまだ たろう,03-1234-5678,営業,\r\n\
                   ,ナナシ,202,,\r\n\
                   田中 花子,たなか,203,総務,\"備考, 複数行\nの備考\"\r\n\
                   鈴木,すずき,03-12AB,,\r\n\
                   佐藤,さとう,204,,\r\n";
        let err = pb.import_csv(bad.as_bytes()).await.unwrap_err();
        let PhonebookError::Rows(rows) = err else { panic!("{err}") };
        assert_eq!(
            rows,
            vec![
                RowError { row: 3, message: "name is required".into() },
                // Row 4 runs over two lines, so 鈴木 is on line 6.
                RowError {
                    row: 6,
                    message: "number \"03-12AB\" may hold only digits, a leading '+', hyphens, spaces and parentheses"
                        .into()
                },
            ]
        );
        // Nothing changed.
        assert_eq!(pb.version().await.unwrap(), 1);
        assert_eq!(pb.search("", 10).await.unwrap(), vec![kept.clone()]);

        let good = bad.replace(",ナナシ,202", "名無し,ナナシ,202").replace("03-12AB", "03-1234");
        let report = pb.import_csv(good.as_bytes()).await.unwrap();
        assert_eq!(report, ImportReport { version: 2, entries: 5 });
        let all = pb.search("", 100).await.unwrap();
        assert_eq!(names(&all), ["佐藤", "鈴木", "田中 花子", "名無し", "山田 太郎"]);
        assert_eq!(all[2].note, "備考, 複数行\nの備考");
        assert_eq!(pb.get(kept.id).await.unwrap(), None);

        // Clients from before the import take a full copy; after it, deltas.
        let delta = pb.since(1).await.unwrap();
        assert!(delta.full && delta.deleted.is_empty());
        assert_eq!(delta.entries.len(), 5);
        pb.remove(all[0].id).await.unwrap();
        let delta = pb.since(2).await.unwrap();
        assert_eq!((delta.full, delta.deleted.clone()), (false, vec![all[0].id]));
    }

    #[tokio::test]
    async fn replace_all_checks_every_entry() {
        let pb = memory().await;
        let err = pb
            .replace_all(vec![new("a", "", "201", ""), new("", "", "202", ""), new("c", "", "x", "")])
            .await
            .unwrap_err();
        let PhonebookError::Rows(rows) = err else { panic!("{err}") };
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(pb.version().await.unwrap(), 0);
        assert_eq!(pb.replace_all(vec![new("a", "", "201", "")]).await.unwrap(), 1);
        // An empty list empties the book (a file without entries is refused
        // by validate_rows instead).
        assert_eq!(pb.replace_all(vec![]).await.unwrap(), 2);
        assert!(pb.search("", 10).await.unwrap().is_empty());
    }

    #[test]
    fn csv_headers_and_rows() {
        // Columns by name in any order, optional ones left out, Japanese
        // headings, blank rows skipped, an export's formula guard undone.
        let ok =
            Phonebook::validate_rows(&rows("電話番号,名前,\r\n201,'=SUM,\r\n,,\r\n\r\n+81312345678,x\r\n")).unwrap();
        assert_eq!(ok, vec![new("=SUM", "", "201", ""), new("x", "", "+81312345678", "")]);

        let errors = |text: &str| Phonebook::validate_rows(&rows(text)).unwrap_err();
        assert_eq!(errors("")[0].row, 1);
        assert!(errors("")[0].message.contains("empty"));
        let e = errors("name,phone\r\na,201\r\n");
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("unknown column \"phone\""), "{}", e[0]);
        assert!(e[1].message.contains("\"number\" is missing"), "{}", e[1]);
        assert!(errors("name,number,Name\r\n")[0].message.contains("twice"));
        let e = errors("name,number\r\n");
        assert_eq!((e[0].row, e[0].message.as_str()), (1, "the file has a header but no entries"));
        let e = errors("name,number\r\na,201,extra\r\nb,202,\r\n");
        assert_eq!(e, vec![RowError { row: 2, message: "field 3 has a value but its column has no heading".into() }]);
    }

    #[tokio::test]
    async fn csv_export_round_trips() {
        let pb = memory().await;
        pb.add(new("=cmd|'/C calc'!A0", "", "+81312345678", "")).await.unwrap();
        pb.add(NewEntry { note: "a, \"b\"\nc".into(), ..new("山田", "やまだ", "201", "-営業-") }).await.unwrap();
        let before = pb.search("", 10).await.unwrap();
        let out = pb.export_csv().await.unwrap();
        assert!(out.starts_with("\u{feff}name,kana,number,department,note\r\n"), "{out}");
        assert!(out.contains("'=cmd|'/C calc'!A0,,+81312345678,,\r\n"), "{out}");

        // Through Shift_JIS too, as Excel would save it.
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(out.trim_start_matches(csv::BOM));
        pb.import_csv(&sjis).await.unwrap();
        let after = pb.search("", 10).await.unwrap();
        let strip = |v: &[Entry]| v.iter().map(|e| Entry { id: 0, ..e.clone() }).collect::<Vec<_>>();
        assert_eq!(strip(&after), strip(&before));
    }

    #[tokio::test]
    async fn search_folds_kana_width_and_case() {
        let pb = memory().await;
        for e in [
            new("山田 太郎", "ヤマダ タロウ", "03-1234-5678", "営業部"),
            new("山田 花子", "やまだ はなこ", "03-1234-9999", "総務部"),
            new("田中 一郎", "ﾀﾅｶ ｲﾁﾛｳ", "+81 6 5555 0001", "営業部"),
            new("ACME サポート", "", "0120-000-111", "ＩＴ"),
            new("阿部", "アベ", "201", ""),
        ] {
            pb.add(e).await.unwrap();
        }
        let find = |q: &'static str| {
            let pb = &pb;
            async move { names(&pb.search(q, 10).await.unwrap()).into_iter().map(String::from).collect::<Vec<_>>() }
        };
        // Sorted by kana, hiragana and katakana together; no kana last.
        assert_eq!(find("").await, ["阿部", "田中 一郎", "山田 太郎", "山田 花子", "ACME サポート"]);
        // Hiragana finds katakana kana and the other way round.
        assert_eq!(find("やまだ").await, ["山田 太郎", "山田 花子"]);
        assert_eq!(find("ヤマダハナコ").await, ["山田 花子"]);
        // Half-width katakana in the query or in the data.
        assert_eq!(find("ﾔﾏﾀﾞ ﾀﾛｳ").await, ["山田 太郎"]);
        assert_eq!(find("たなか").await, ["田中 一郎"]);
        assert_eq!(find("ｲﾁﾛｳ").await, ["田中 一郎"]);
        // Case and full-width letters.
        assert_eq!(find("acme").await, ["ACME サポート"]);
        assert_eq!(find("ａｃｍｅ").await, ["ACME サポート"]);
        assert_eq!(find("it").await, ["ACME サポート"]);
        // Every word must match, in any field.
        assert_eq!(find("山田 営業").await, ["山田 太郎"]);
        assert_eq!(find("営業部").await, ["田中 一郎", "山田 太郎"]);
        assert!(find("山田 経理").await.is_empty());
        // Number fragments, typed with or without punctuation.
        assert_eq!(find("1234").await, ["山田 太郎", "山田 花子"]);
        assert_eq!(find("1234-5678").await, ["山田 太郎"]);
        assert_eq!(find("03 1234 9999").await, ["山田 花子"]);
        assert_eq!(find("５５５５").await, ["田中 一郎"]);
        assert_eq!(find("201").await, ["阿部"]);
        assert!(find("7777").await.is_empty());
        // The limit.
        assert_eq!(pb.search("", 2).await.unwrap().len(), 2);
    }

    /// Another process (the CLI) writing to the same database: the index
    /// notices by the version.
    #[tokio::test]
    async fn search_sees_writes_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new().filename(dir.path().join("pbx.db")).create_if_missing(true);
        let pool = |opts: SqliteConnectOptions| SqlitePoolOptions::new().max_connections(2).connect_with(opts);
        let ours = pool(opts.clone()).await.unwrap();
        sqlx::migrate!("./migrations").run(&ours).await.unwrap();
        let ours = Phonebook::new(ours);
        let theirs = Phonebook::new(pool(opts).await.unwrap());

        assert!(ours.search("", 10).await.unwrap().is_empty());
        let a = theirs.add(new("山田", "やまだ", "201", "")).await.unwrap();
        assert_eq!(ours.search("ヤマダ", 10).await.unwrap(), vec![a.clone()]);
        let a = theirs.update(a.id, new("山田", "やまだ", "202", "")).await.unwrap();
        let b = theirs.add(new("阿部", "あべ", "203", "")).await.unwrap();
        assert_eq!(ours.search("", 10).await.unwrap(), vec![b.clone(), a.clone()]);
        theirs.remove(b.id).await.unwrap();
        assert_eq!(ours.search("", 10).await.unwrap(), vec![a.clone()]);
        theirs.replace_all(vec![new("新", "しん", "204", "")]).await.unwrap();
        assert_eq!(names(&ours.search("", 10).await.unwrap()), ["新"]);
    }

    /// Axum handlers need Send futures and shared state.
    #[allow(dead_code)]
    fn futures_are_send(pb: &'static Phonebook) {
        fn shared<T: Send + Sync>(_: T) {}
        fn send<T: Send>(_: T) {}
        shared(pb);
        send(pb.search("", 1));
        send(pb.since(0));
        send(pb.import_csv(b""));
        send(pb.export_csv());
        send(pb.add(NewEntry::default()));
    }

    #[test]
    fn xml_for_phones() {
        let entries = vec![
            Entry {
                id: 1,
                name: "R&D <Lab> \"A\" 'B'".into(),
                kana: "".into(),
                number: "+81312345678".into(),
                department: "".into(),
                note: "".into(),
            },
            Entry {
                id: 2,
                name: "山田".into(),
                kana: "".into(),
                number: "201".into(),
                department: "".into(),
                note: "".into(),
            },
        ];
        assert_eq!(
            to_xml(&entries),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<YealinkIPPhoneDirectory>\n\
             <DirectoryEntry><Name>R&amp;D &lt;Lab&gt; &quot;A&quot; &apos;B&apos;</Name><Telephone>+81312345678</Telephone></DirectoryEntry>\n\
             <DirectoryEntry><Name>山田</Name><Telephone>201</Telephone></DirectoryEntry>\n\
             </YealinkIPPhoneDirectory>\n"
        );
        assert_eq!(
            to_xml(&[]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<YealinkIPPhoneDirectory>\n</YealinkIPPhoneDirectory>\n"
        );
    }

    /// Search speed at 100,000 entries: `cargo test -p tsunagu-server --lib
    /// phonebook::tests::search_speed -- --ignored --nocapture` (add
    /// `--release` for the server's real speed). Prints, asserts nothing.
    #[tokio::test]
    #[ignore]
    async fn search_speed() {
        use std::time::Instant;
        let family = ["山田", "田中", "佐藤", "鈴木", "高橋", "伊藤", "渡辺", "中村", "小林", "加藤"];
        let family_kana = [
            "やまだ",
            "たなか",
            "さとう",
            "すずき",
            "たかはし",
            "いとう",
            "わたなべ",
            "なかむら",
            "こばやし",
            "かとう",
        ];
        let given = ["太郎", "花子", "一郎", "次郎", "美咲", "翔太", "陽菜", "大輔", "結衣", "健"];
        let given_kana =
            ["たろう", "はなこ", "いちろう", "じろう", "みさき", "しょうた", "ひな", "だいすけ", "ゆい", "けん"];
        let depts = ["営業部", "総務部", "経理部", "開発部", "Support"];
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let entries: Vec<NewEntry> = (0..MAX_IMPORT_ROWS)
            .map(|i| {
                let (f, g) = (next() % 10, next() % 10);
                NewEntry {
                    name: format!("{} {}{}", family[f], given[g], i % 97),
                    kana: format!("{} {}", family_kana[f], given_kana[g]),
                    number: format!("03-{:04}-{:04}", next() % 10000, i % 10000),
                    department: depts[next() % depts.len()].into(),
                    note: String::new(),
                }
            })
            .collect();
        let pb = memory().await;
        let t = Instant::now();
        pb.replace_all(entries).await.unwrap();
        println!("import and index of {MAX_IMPORT_ROWS}: {:?}", t.elapsed());
        for (i, q) in ["x", "y"].into_iter().enumerate() {
            let added = pb.add(new("追加", "ついか", "999", "")).await.unwrap();
            if i == 1 {
                pb.remove(added.id).await.unwrap();
            }
            let t = Instant::now();
            pb.search(q, 1).await.unwrap();
            println!("search after {} edits: {:?}", i + 1, t.elapsed());
        }

        let queries = ["やまだ", "ﾀﾅｶ ﾊﾅｺ", "0312", "5678", "営業", "support", "zzz", "た", "山田 営業部 太郎", ""];
        let mut times = Vec::new();
        for q in queries {
            let mut these = Vec::new();
            let mut found = 0;
            for _ in 0..30 {
                let t = Instant::now();
                found = pb.search(q, 50).await.unwrap().len();
                these.push(t.elapsed());
            }
            these.sort();
            println!("{q:?}: {found} results, median {:?}", these[these.len() / 2]);
            times.extend(these);
        }
        let t = Instant::now();
        for _ in 0..100 {
            pb.version().await.unwrap();
        }
        println!("version read: {:?}", t.elapsed() / 100);
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "search over {} entries: p50 {:?}, p99 {:?}, max {:?}",
            MAX_IMPORT_ROWS + 1,
            pct(0.5),
            pct(0.99),
            times.last().unwrap()
        );
    }
}
