//! `sessions` and `session_lines`.
use super::{
    schema::{session_lines, sessions},
    Db,
};
use crate::{
    domain::{ids::SessionId, ids::StoreId, session_state::Status, time::Timestamp, Environment},
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = sessions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct SessionRow {
    pub id: String,
    pub store_id: String,
    pub environment: String,
    pub status: String,
    pub currency: String,
    pub amount_subtotal: i64,
    pub amount_discount: i64,
    pub amount_total: i64,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub auto_redirect: bool,
    pub customer_id: Option<String>,
    pub buyer_email: Option<String>,
    pub billing_detail: Option<String>,
    pub metadata: String,
    pub order_merchant_external_id: Option<String>,
    pub affiliate_code: Option<String>,
    pub coupon_id: Option<String>,
    pub coupon_code: Option<String>,
    pub store_name: String,
    pub with_trial: bool,
    pub client_token: String,
    pub order_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = session_lines, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct LineRow {
    pub session_id: String,
    pub position: i32,
    pub product_id: Option<i64>,
    pub product_version_id: Option<String>,
    pub product_name: String,
    pub unit_amount: i64,
    pub quantity: i32,
    pub amount_total: i64,
    pub billing_period: String,
    pub trial_days: i32,
    pub subscription: bool,
    pub server_id: Option<String>,
    pub gift_to_platform: Option<String>,
    pub gift_to_id: Option<String>,
    pub custom_variables: String,
    pub metadata: String,
}

/// Writes a session's lines as one element of a `pipeline!`. On PostgreSQL each line is its
/// own single-row INSERT, all sent together: a statement of fixed shape stays prepared on
/// the connection, where a multi-row INSERT's text (and so its preparation, one more round
/// trip) changes with the number of rows. On SQLite, where a statement costs no round trip
/// but preparing one costs more than running it, the same single-row INSERT runs per line.
pub trait InsertLines {
    type Future;
    fn insert_lines(self, lines: &[LineRow]) -> Self::Future;
}

impl<'a> InsertLines for &mut &'a diesel_async::AsyncPgConnection {
    type Future = futures_util::future::BoxFuture<'a, diesel::QueryResult<usize>>;
    fn insert_lines(self, lines: &[LineRow]) -> Self::Future {
        let shared = *self; // the shared reference, which lives for 'a
        let inserts: Vec<_> = lines
            .iter()
            .map(|line| {
                let mut conn = shared;
                let insert = diesel::insert_into(session_lines::table).values(line.clone());
                async move { insert.execute(&mut conn).await }
            })
            .collect();
        Box::pin(async move {
            let done = futures_util::future::try_join_all(inserts).await?;
            Ok(done.into_iter().sum())
        })
    }
}

impl<'c> InsertLines for &'c mut super::SqliteConn {
    type Future = futures_util::future::BoxFuture<'c, diesel::QueryResult<usize>>;
    fn insert_lines(self, lines: &[LineRow]) -> Self::Future {
        let lines = lines.to_vec();
        self.spawn_blocking(move |c| {
            use diesel::RunQueryDsl as Sync;
            let mut inserted = 0;
            for line in lines {
                inserted +=
                    Sync::execute(diesel::insert_into(session_lines::table).values(line), c)?;
            }
            Ok(inserted)
        })
    }
}

/// A session with its locked lines, in line order.
pub struct StoredSession {
    pub session: SessionRow,
    pub lines: Vec<LineRow>,
}

fn attach(
    sessions: Vec<SessionRow>,
    mut lines: HashMap<String, Vec<LineRow>>,
) -> Vec<StoredSession> {
    sessions
        .into_iter()
        .map(|session| StoredSession {
            lines: lines.remove(&session.id).unwrap_or_default(),
            session,
        })
        .collect()
}

/// The statements of `fetch`, written once for both backends.
macro_rules! session_by_id {
    ($id:expr) => {
        sessions::table.find($id).select(SessionRow::as_select())
    };
}
macro_rules! lines_by_session {
    ($id:expr) => {
        session_lines::table
            .filter(session_lines::session_id.eq($id))
            .order(session_lines::position)
            .select(LineRow::as_select())
    };
}

/// One session with its lines; `scope` limits it to one store and environment. This is
/// the read behind GetSession and every watcher, the hottest path of the service.
///
/// Both statements look up primary keys only (the scope is checked here, not in SQL), so
/// their plans cannot go wrong on a database without statistics. On PostgreSQL they are
/// one joined statement. On SQLite they run through synchronous diesel, whose
/// statement cache is keyed by the query's type and which reads rows in place; the async
/// wrapper would render the SQL text and copy every row on each call.
async fn fetch(
    db: &Db,
    id: &SessionId,
    scope: Option<(&StoreId, Environment)>,
) -> AppResult<Option<StoredSession>> {
    let (mut sessions, lines): (Vec<SessionRow>, Vec<LineRow>) = match db {
        Db::Sqlite { pool, .. } => {
            let mut conn = pool.get().await?;
            let id = id.to_string();
            conn.spawn_blocking(move |c| {
                use diesel::RunQueryDsl as Sync;
                Ok((
                    Sync::load(session_by_id!(&id), c)?,
                    Sync::load(lines_by_session!(&id), c)?,
                ))
            })
            .await?
        }
        Db::Postgres { pool } => {
            // One statement: the session joined to its lines (one row per line, the
            // session's columns repeated). PostgreSQL's cost is per statement, and most
            // sessions have one line.
            let mut conn = pool.get().await?;
            let rows: Vec<(SessionRow, Option<LineRow>)> = sessions::table
                .left_join(session_lines::table.on(session_lines::session_id.eq(sessions::id)))
                .filter(sessions::id.eq(id.as_str()))
                .order(session_lines::position)
                .select((SessionRow::as_select(), Option::<LineRow>::as_select()))
                .load(&mut *conn)
                .await?;
            let mut lines = Vec::with_capacity(rows.len());
            let mut session = None;
            for (s, line) in rows {
                lines.extend(line);
                session.get_or_insert(s);
            }
            (session.into_iter().collect(), lines)
        }
    };
    let Some(session) = sessions.pop() else {
        return Ok(None);
    };
    let in_scope = scope.is_none_or(|(store, env)| {
        session.store_id == store.as_str() && session.environment == env.as_str()
    });
    Ok(in_scope.then_some(StoredSession { session, lines }))
}

/// The session if it belongs to this store and environment. Any other session is
/// indistinguishable from one that does not exist.
pub async fn get(
    db: &Db,
    id: &SessionId,
    store: &StoreId,
    env: Environment,
) -> AppResult<Option<StoredSession>> {
    fetch(db, id, Some((store, env))).await
}

/// Any session by id: the platform's view, across stores and environments.
pub async fn get_any(db: &Db, id: &SessionId) -> AppResult<Option<StoredSession>> {
    fetch(db, id, None).await
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// As clients see it: OPEN excludes, and EXPIRED includes, open sessions past expiry.
    pub status: Option<Status>,
    pub customer_id: Option<String>,
    /// Inclusive.
    pub created_after: Option<i64>,
    /// Exclusive.
    pub created_before: Option<i64>,
}

/// A page starts strictly after this session in (created_at, id) descending order. Keyset
/// pagination: sessions created while a client pages are newer than its cursor, so they
/// never shift a later page (no duplicates, no gaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: i64,
    pub id: String,
}

pub async fn list(
    db: &Db,
    store: &StoreId,
    env: Environment,
    filter: &ListFilter,
    after: Option<&ListCursor>,
    page_size: i64,
    now: Timestamp,
) -> AppResult<(Vec<StoredSession>, Option<ListCursor>)> {
    let (mut page, lines) = with_conn!(db, |conn| {
        let mut q = sessions::table
            .filter(sessions::store_id.eq(store.as_str()))
            .filter(sessions::environment.eq(env.as_str()))
            .select(SessionRow::as_select())
            .order((sessions::created_at.desc(), sessions::id.desc()))
            .limit(page_size + 1)
            .into_boxed();
        let open = Status::Open.as_str();
        q = match filter.status {
            None => q,
            Some(Status::Open) => q
                .filter(sessions::status.eq(open))
                .filter(sessions::expires_at.gt(now.0)),
            Some(Status::Expired) => q.filter(
                sessions::status
                    .eq(Status::Expired.as_str())
                    .or(sessions::status
                        .eq(open)
                        .and(sessions::expires_at.le(now.0))),
            ),
            Some(s) => q.filter(sessions::status.eq(s.as_str())),
        };
        if let Some(customer) = &filter.customer_id {
            q = q.filter(sessions::customer_id.eq(customer));
        }
        if let Some(t) = filter.created_after {
            q = q.filter(sessions::created_at.ge(t));
        }
        if let Some(t) = filter.created_before {
            q = q.filter(sessions::created_at.lt(t));
        }
        if let Some(c) = after {
            q = q.filter(
                sessions::created_at
                    .lt(c.created_at)
                    .or(sessions::created_at
                        .eq(c.created_at)
                        .and(sessions::id.lt(c.id.clone()))),
            );
        }
        let page: Vec<SessionRow> = q.load(conn).await?;
        let ids: Vec<&str> = page
            .iter()
            .take(page_size as usize)
            .map(|s| s.id.as_str())
            .collect();
        let lines = lines_of!(conn, ids);
        (page, lines)
    });
    let next = if page.len() as i64 > page_size {
        page.truncate(page_size as usize);
        page.last().map(|s| ListCursor {
            created_at: s.created_at,
            id: s.id.clone(),
        })
    } else {
        None
    };
    Ok((attach(page, lines), next))
}
