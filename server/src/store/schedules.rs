//! Business-hour schedules in the SQLite store (read at each call).

use super::{Dest, SqliteStore, StoreError};
use crate::schedule::{self, Schedule};
use sqlx::Row;

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Schedule, StoreError> {
    let opt = |v: Option<String>| v.map(|s| Dest::parse(&s)).transpose();
    Ok(Schedule {
        name: r.try_get("name")?,
        label: r.try_get("label")?,
        hours: schedule::parse_hours(&r.try_get::<String, _>("hours")?).map_err(StoreError::Invalid)?,
        open: Dest::parse(&r.try_get::<String, _>("open_dest")?)?,
        closed: Dest::parse(&r.try_get::<String, _>("closed_dest")?)?,
        holiday: opt(r.try_get("holiday_dest")?)?,
        disaster: opt(r.try_get("disaster_dest")?)?,
        closed_days: schedule::parse_closed_days(&r.try_get::<String, _>("closed_days")?).map_err(StoreError::Invalid)?,
        use_holidays: r.try_get::<i64, _>("use_holidays")? != 0,
        overrides: schedule::parse_overrides(&r.try_get::<String, _>("overrides")?).map_err(StoreError::Invalid)?,
    })
}

impl SqliteStore {
    pub async fn schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query("SELECT * FROM schedules WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Add or replace a schedule. A schedule may not lead to itself.
    pub async fn put_schedule(&self, s: &Schedule) -> Result<(), StoreError> {
        schedule::check_name(&s.name)?;
        let me = Dest::Schedule(s.name.clone());
        if [Some(&s.open), Some(&s.closed), s.holiday.as_ref(), s.disaster.as_ref()].into_iter().flatten().any(|d| *d == me) {
            return Err(StoreError::Invalid(format!("schedule {} cannot send calls to itself", s.name)));
        }
        sqlx::query(
            "INSERT INTO schedules (name, label, hours, open_dest, closed_dest, holiday_dest, disaster_dest, closed_days, use_holidays, overrides)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET label = excluded.label, hours = excluded.hours, open_dest = excluded.open_dest,
               closed_dest = excluded.closed_dest, holiday_dest = excluded.holiday_dest, disaster_dest = excluded.disaster_dest,
               closed_days = excluded.closed_days, use_holidays = excluded.use_holidays, overrides = excluded.overrides",
        )
        .bind(&s.name)
        .bind(&s.label)
        .bind(schedule::hours_text(&s.hours))
        .bind(s.open.to_string())
        .bind(s.closed.to_string())
        .bind(s.holiday.as_ref().map(Dest::to_string))
        .bind(s.disaster.as_ref().map(Dest::to_string))
        .bind(schedule::closed_days_text(&s.closed_days))
        .bind(i64::from(s.use_holidays))
        .bind(schedule::overrides_text(&s.overrides))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_schedule(&self, name: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM schedules WHERE name = ?").bind(name).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule {name}")));
        }
        Ok(())
    }
}
