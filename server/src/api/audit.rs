//! The audit log: every change and every sign-in, with who, what, the
//! value before and after, when, and from which address. Readable by
//! system and organisation admins, exportable as CSV.

use super::rights::{Access, Resource};
use super::session::Admin;
use super::{csv_response, ApiResult, ApiState};
use crate::store::unix_ms;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Row, SqlitePool};

/// Write one entry. A failure is logged, not passed on: the change it
/// describes has happened, and saying it failed would be untrue.
pub async fn record(pool: &SqlitePool, actor: &str, action: &str, target: &str, before: Option<Value>, after: Option<Value>, source: &str) {
    let r = sqlx::query("INSERT INTO audit_log (at, actor, action, target, before, after, source) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(unix_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(before.map(|v| v.to_string()))
        .bind(after.map(|v| v.to_string()))
        .bind(source)
        .execute(pool)
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, actor, action, target, "could not write the audit log");
    }
}

/// Record a change made by a signed-in admin.
pub async fn change(state: &ApiState, who: &Admin, action: &str, target: &str, before: Option<Value>, after: Option<Value>) {
    record(state.store.pool(), &who.principal.name, action, target, before, after, &who.source).await;
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub source: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct Filter {
    from: Option<i64>,
    to: Option<i64>,
    actor: Option<String>,
    limit: Option<i64>,
}

async fn query(pool: &SqlitePool, f: &Filter, cap: i64) -> ApiResult<Vec<Entry>> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM audit_log WHERE 1 = 1");
    if let Some(from) = f.from {
        qb.push(" AND at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        qb.push(" AND at < ").push_bind(to);
    }
    if let Some(actor) = f.actor.as_ref().filter(|a| !a.is_empty()) {
        qb.push(" AND actor = ").push_bind(actor.clone());
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit.unwrap_or(cap).clamp(1, cap));
    let rows = qb.build().fetch_all(pool).await.map_err(crate::store::StoreError::from)?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    rows.iter()
        .map(|r| {
            Ok(Entry {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                before: json(r.try_get("before")?),
                after: json(r.try_get("after")?),
                source: r.try_get("source")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| crate::store::StoreError::from(e).into())
}

pub async fn list(State(state): State<ApiState>, who: Admin, Query(f): Query<Filter>) -> ApiResult<Json<Vec<Entry>>> {
    who.require(Resource::Audit, Access::Read)?;
    Ok(Json(query(state.store.pool(), &f, 1000).await?))
}

pub async fn export(State(state): State<ApiState>, who: Admin, Query(f): Query<Filter>) -> ApiResult<Response> {
    who.require(Resource::Audit, Access::Read)?;
    let rows = query(state.store.pool(), &f, 1_000_000).await?;
    let mut out = String::from(crate::csv::BOM);
    crate::csv::write_row(&mut out, &["id", "at", "actor", "action", "target", "before", "after", "source"]);
    for e in rows {
        let at = super::logs::iso_time(e.at);
        let before = e.before.map(|v| v.to_string()).unwrap_or_default();
        let after = e.after.map(|v| v.to_string()).unwrap_or_default();
        crate::csv::write_row(&mut out, &[&e.id.to_string(), &at, &e.actor, &e.action, &e.target, &before, &after, &e.source]);
    }
    Ok(csv_response("audit-log.csv", out))
}
