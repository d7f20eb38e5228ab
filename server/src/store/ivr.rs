//! IVR menus and their options in the SQLite store. A call reads a menu
//! each time it enters it, so what is saved here is live at once. A menu is
//! saved with all its options in one transaction, after every check
//! (`IvrMenu::check`, then `ivr::check_links` against the stored menus read
//! in the same transaction): a refused save changes nothing.

use super::{Dest, SqliteStore, StoreError};
use crate::ivr::{self, IvrAction, IvrMenu};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn menu_from_row(r: &sqlx::sqlite::SqliteRow, options: BTreeMap<String, IvrAction>) -> Result<IvrMenu, StoreError> {
    // Stored values passed the checks when saved; clamping keeps a row
    // edited by hand from making a run that never waits or waits forever.
    let ms = |v: i64, range: &std::ops::RangeInclusive<u64>| Duration::from_millis((v.max(0) as u64).clamp(*range.start(), *range.end()));
    Ok(IvrMenu {
        name: r.try_get("name")?,
        label: r.try_get("label")?,
        greeting: r.try_get("greeting")?,
        prompt: r.try_get("prompt")?,
        invalid_prompt: r.try_get("invalid_prompt")?,
        timeout_prompt: r.try_get("timeout_prompt")?,
        first_digit: ms(r.try_get("first_digit_ms")?, &ivr::FIRST_DIGIT_MS),
        inter_digit: ms(r.try_get("inter_digit_ms")?, &ivr::INTER_DIGIT_MS),
        max_repeats: (r.try_get::<i64, _>("max_repeats")?.clamp(i64::from(*ivr::MAX_REPEATS.start()), i64::from(*ivr::MAX_REPEATS.end()))) as u32,
        on_failure: IvrAction::parse(&r.try_get::<String, _>("on_failure")?)?,
        direct_dial: r.try_get::<i64, _>("direct_dial")? != 0,
        options,
    })
}

fn options_from_rows(rows: &[sqlx::sqlite::SqliteRow]) -> Result<BTreeMap<String, BTreeMap<String, IvrAction>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, IvrAction>> = BTreeMap::new();
    for r in rows {
        let action = IvrAction::parse(&r.try_get::<String, _>("action")?)?;
        out.entry(r.try_get("menu")?).or_default().insert(r.try_get("digits")?, action);
    }
    Ok(out)
}

/// Each stored menu's name and the sub-menus it enters.
async fn links(conn: &mut sqlx::SqliteConnection) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in sqlx::query("SELECT name, on_failure FROM ivr_menus").fetch_all(&mut *conn).await? {
        let subs = graph.entry(r.try_get("name")?).or_default();
        if let Some(s) = IvrAction::parse(&r.try_get::<String, _>("on_failure")?).ok().as_ref().and_then(IvrAction::sub_menu) {
            subs.insert(s.to_string());
        }
    }
    for r in sqlx::query("SELECT menu, action FROM ivr_options WHERE action LIKE 'ivr:%'").fetch_all(&mut *conn).await? {
        let action: String = r.try_get("action")?;
        if let Some(s) = IvrAction::parse(&action).ok().as_ref().and_then(IvrAction::sub_menu) {
            graph.entry(r.try_get("menu")?).or_default().insert(s.to_string());
        }
    }
    Ok(graph)
}

/// What still sends calls to `ivr:NAME`, named for the admin.
async fn users_of(conn: &mut sqlx::SqliteConnection, name: &str) -> Result<Vec<String>, StoreError> {
    let dest = Dest::Ivr(name.to_string()).to_string();
    let mut used = Vec::new();
    let rows = sqlx::query("SELECT menu, digits FROM ivr_options WHERE action = ? AND menu <> ? ORDER BY menu, digits").bind(&dest).bind(name).fetch_all(&mut *conn).await?;
    for r in rows {
        used.push(format!("IVR menu {} (option {})", r.try_get::<String, _>("menu")?, r.try_get::<String, _>("digits")?));
    }
    let rows = sqlx::query("SELECT name FROM ivr_menus WHERE on_failure = ? AND name <> ? ORDER BY name").bind(&dest).bind(name).fetch_all(&mut *conn).await?;
    for r in rows {
        used.push(format!("IVR menu {} (on_failure)", r.try_get::<String, _>("name")?));
    }
    for r in sqlx::query("SELECT number FROM dids WHERE dest = ? ORDER BY number").bind(&dest).fetch_all(&mut *conn).await? {
        used.push(format!("number {}", r.try_get::<String, _>("number")?));
    }
    let rows = sqlx::query("SELECT name FROM schedules WHERE ? IN (open_dest, closed_dest, holiday_dest, disaster_dest) ORDER BY name").bind(&dest).fetch_all(&mut *conn).await?;
    for r in rows {
        used.push(format!("schedule {}", r.try_get::<String, _>("name")?));
    }
    for r in sqlx::query("SELECT number FROM ring_groups WHERE overflow = ? ORDER BY number").bind(&dest).fetch_all(&mut *conn).await? {
        used.push(format!("ring group {} (overflow)", r.try_get::<String, _>("number")?));
    }
    let rows = sqlx::query("SELECT extension FROM user_settings WHERE ? IN (fwd_always, fwd_busy, fwd_no_answer, fwd_unregistered) ORDER BY extension")
        .bind(&dest)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        used.push(format!("forwarding of extension {}", r.try_get::<String, _>("extension")?));
    }
    Ok(used)
}

impl SqliteStore {
    /// A menu with its options (what a call entering `ivr:NAME` reads).
    pub async fn ivr_menu(&self, name: &str) -> Result<Option<IvrMenu>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM ivr_menus WHERE name = ?").bind(name).fetch_optional(&self.pool).await? else { return Ok(None) };
        let rows = sqlx::query("SELECT * FROM ivr_options WHERE menu = ?").bind(name).fetch_all(&self.pool).await?;
        let options = options_from_rows(&rows)?.remove(name).unwrap_or_default();
        menu_from_row(&row, options).map(Some)
    }

    pub async fn list_ivr_menus(&self) -> Result<Vec<IvrMenu>, StoreError> {
        // One read transaction, so a menu and its options match.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT * FROM ivr_menus ORDER BY name").fetch_all(&mut *tx).await?;
        let mut options = options_from_rows(&sqlx::query("SELECT * FROM ivr_options").fetch_all(&mut *tx).await?)?;
        tx.commit().await?;
        rows.iter().map(|r| menu_from_row(r, options.remove(&r.try_get::<String, _>("name")?).unwrap_or_default())).collect()
    }

    /// How `m` would link with the stored menus: a loop, a missing
    /// sub-menu or nesting too deep (the API answers a loop 422).
    pub async fn check_ivr_links(&self, m: &IvrMenu) -> Result<Result<(), ivr::LinkProblem>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(ivr::check_links(m, &links(&mut conn).await?))
    }

    /// Add or replace a menu and all its options, all or nothing.
    pub async fn put_ivr_menu(&self, m: &IvrMenu) -> Result<(), StoreError> {
        m.check()?;
        let mut tx = self.pool.begin().await?;
        ivr::check_links(m, &links(&mut tx).await?).map_err(|p| StoreError::Invalid(p.message()))?;
        sqlx::query(
            "INSERT INTO ivr_menus (name, label, greeting, prompt, invalid_prompt, timeout_prompt, first_digit_ms, inter_digit_ms, max_repeats,
               on_failure, direct_dial, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET label = excluded.label, greeting = excluded.greeting, prompt = excluded.prompt,
               invalid_prompt = excluded.invalid_prompt, timeout_prompt = excluded.timeout_prompt, first_digit_ms = excluded.first_digit_ms,
               inter_digit_ms = excluded.inter_digit_ms, max_repeats = excluded.max_repeats, on_failure = excluded.on_failure,
               direct_dial = excluded.direct_dial, updated_at = excluded.updated_at",
        )
        .bind(&m.name)
        .bind(&m.label)
        .bind(&m.greeting)
        .bind(&m.prompt)
        .bind(&m.invalid_prompt)
        .bind(&m.timeout_prompt)
        .bind(i64::try_from(m.first_digit.as_millis()).unwrap_or(i64::MAX))
        .bind(i64::try_from(m.inter_digit.as_millis()).unwrap_or(i64::MAX))
        .bind(i64::from(m.max_repeats))
        .bind(m.on_failure.to_string())
        .bind(i64::from(m.direct_dial))
        .bind(super::unix_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM ivr_options WHERE menu = ?").bind(&m.name).execute(&mut *tx).await?;
        for (digits, action) in &m.options {
            sqlx::query("INSERT INTO ivr_options (menu, digits, action) VALUES (?, ?, ?)").bind(&m.name).bind(digits).bind(action.to_string()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What still sends calls to `ivr:NAME` (other menus, numbers,
    /// schedules, ring groups, forwarding), named for the admin.
    pub async fn ivr_menu_users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        users_of(&mut conn, name).await
    }

    /// Remove a menu nothing uses any more (its options go with it).
    pub async fn remove_ivr_menu(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let used = users_of(&mut tx, name).await?;
        if !used.is_empty() {
            return Err(StoreError::Invalid(format!("IVR menu {name} is still used by {}; change those first", used.join(", "))));
        }
        let r = sqlx::query("DELETE FROM ivr_menus WHERE name = ?").bind(name).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("IVR menu {name}")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Announcements a menu names that do not exist (yet). Not refused: a
    /// menu may be built before its prompts are recorded, and a call skips
    /// a prompt that is missing; the API and the command line warn.
    pub async fn ivr_missing_announcements(&self, m: &IvrMenu) -> Result<Vec<String>, StoreError> {
        let table = sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'announcements'").fetch_optional(&self.pool).await?;
        if table.is_none() {
            return Ok(Vec::new());
        }
        let mut missing = Vec::new();
        for name in m.announcements() {
            let found = sqlx::query("SELECT 1 FROM announcements WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
            if found.is_none() && !missing.iter().any(|n| n == name) {
                missing.push(name.to_string());
            }
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), "test").await.unwrap();
        (s, dir)
    }

    fn menu(name: &str, opts: &[(&str, &str)]) -> IvrMenu {
        let mut m = IvrMenu::new(name, "choices");
        for (k, a) in opts {
            m.options.insert(k.to_string(), IvrAction::parse(a).unwrap());
        }
        m
    }

    fn invalid(r: Result<(), StoreError>) -> String {
        match r {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn menus_round_trip_and_links_are_checked() {
        let (s, dir) = store().await;
        let mut sub = menu("sub", &[("1", "user:1001"), ("9", "back"), ("0", "repeat")]);
        sub.greeting = Some("hello".into());
        sub.first_digit = Duration::from_millis(7000);
        sub.direct_dial = true;
        sub.on_failure = IvrAction::Back;
        s.put_ivr_menu(&sub).await.unwrap();
        assert_eq!(s.ivr_menu("sub").await.unwrap(), Some(sub.clone()));

        // A sub-menu that does not exist yet.
        let main = menu("main", &[("1", "group:3000"), ("2", "ivr:sub"), ("3", "ivr:later"), ("4", "schedule:main")]);
        let e = invalid(s.put_ivr_menu(&main).await);
        assert!(e.contains("option 3: no IVR menu later"), "{e}");
        assert_eq!(s.ivr_menu("main").await.unwrap(), None, "nothing stored");
        let mut main = menu("main", &[("1", "group:3000"), ("2", "ivr:sub"), ("4", "schedule:main"), ("5", "announcement:closed")]);
        main.on_failure = IvrAction::parse("user:2999").unwrap();
        s.put_ivr_menu(&main).await.unwrap();

        // A loop: sub → main → sub. The stored sub stays as it was.
        let mut looping = sub.clone();
        looping.options.insert("2".into(), IvrAction::parse("ivr:main").unwrap());
        let e = invalid(s.put_ivr_menu(&looping).await);
        assert!(e.contains("sub → main → sub"), "{e}");
        assert_eq!(s.check_ivr_links(&looping).await.unwrap(), Err(ivr::LinkProblem::Loop(vec!["sub".into(), "main".into(), "sub".into()])));
        assert_eq!(s.ivr_menu("sub").await.unwrap(), Some(sub.clone()));
        // Itself.
        let mut selfish = sub.clone();
        selfish.options.insert("5".into(), IvrAction::parse("ivr:sub").unwrap());
        let e = invalid(s.put_ivr_menu(&selfish).await);
        assert!(e.contains("loops to itself") && e.contains("repeat"), "{e}");
        // A bad field: nothing stored either.
        let mut bad = sub.clone();
        bad.max_repeats = 0;
        invalid(s.put_ivr_menu(&bad).await);
        assert_eq!(s.ivr_menu("sub").await.unwrap(), Some(sub.clone()));

        let all = s.list_ivr_menus().await.unwrap();
        assert_eq!(all, vec![main.clone(), sub.clone()]);

        // Replacing drops options no longer given.
        let mut fewer = main.clone();
        fewer.options.remove("5");
        s.put_ivr_menu(&fewer).await.unwrap();
        assert_eq!(s.ivr_menu("main").await.unwrap().unwrap().options.len(), 3);
        drop((s, dir));
    }

    #[tokio::test]
    async fn a_failed_option_write_leaves_the_menu_as_it_was() {
        let (s, dir) = store().await;
        let m = menu("m", &[("1", "user:1001")]);
        s.put_ivr_menu(&m).await.unwrap();
        // Make the second option insert fail inside the transaction (a
        // trigger stands in for a disk or constraint error).
        sqlx::query("CREATE TRIGGER no_twos BEFORE INSERT ON ivr_options WHEN NEW.digits = '2' BEGIN SELECT RAISE(ABORT, 'no'); END")
            .execute(&s.pool)
            .await
            .unwrap();
        let mut changed = menu("m", &[("1", "user:1009"), ("2", "user:1002")]);
        changed.label = "changed".into();
        assert!(matches!(s.put_ivr_menu(&changed).await, Err(StoreError::Db(_))));
        assert_eq!(s.ivr_menu("m").await.unwrap(), Some(m));
        drop((s, dir));
    }

    #[tokio::test]
    async fn a_menu_in_use_is_not_removed() {
        let (s, dir) = store().await;
        s.put_ivr_menu(&menu("sub", &[("1", "user:1001")])).await.unwrap();
        s.put_ivr_menu(&menu("main", &[("2", "ivr:sub")])).await.unwrap();
        s.put_dids(&[("0312345678".into(), Dest::Ivr("main".into()), String::new())]).await.unwrap();
        let e = invalid(s.remove_ivr_menu("sub").await);
        assert!(e.contains("IVR menu main (option 2)"), "{e}");
        let e = invalid(s.remove_ivr_menu("main").await);
        assert!(e.contains("number 0312345678"), "{e}");
        s.remove_did("0312345678").await.unwrap();
        s.remove_ivr_menu("main").await.unwrap();
        s.remove_ivr_menu("sub").await.unwrap();
        assert!(matches!(s.remove_ivr_menu("sub").await, Err(StoreError::NotFound(_))));
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ivr_options").fetch_one(&s.pool).await.unwrap();
        assert_eq!(left, 0, "options go with their menu");
        drop((s, dir));
    }
}
