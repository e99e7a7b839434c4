//! Bringing stored secrets up to date at start (SQL cannot encrypt, so this runs in Rust
//! after the migrations): webhook secrets still in plaintext, or sealed under an old key,
//! are sealed under the current key; client tokens still in plaintext are replaced by
//! their hash. Every UPDATE is conditional on the value it read, so replicas starting
//! together never overwrite each other's work, and a second run finds nothing to do.
use super::{
    schema::{sessions, webhook_endpoints},
    Db,
};
use crate::secrets::{client_token_hash, Keyring};
use anyhow::Context;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// How many rows each step changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    pub webhook_secrets: usize,
    /// Secrets replaced by a rotation: resealed while they still sign, erased after.
    pub previous_webhook_secrets: usize,
    pub client_tokens: usize,
}

/// The associated data of an endpoint's sealed secret: it opens for this row only.
pub fn endpoint_aad(endpoint_id: &str) -> String {
    format!("webhook_endpoints:{endpoint_id}")
}

/// The associated data of the secret a rotation replaced: its own, so the two sealed
/// values of one row cannot be swapped.
pub fn previous_aad(endpoint_id: &str) -> String {
    format!("webhook_endpoints.previous_secret:{endpoint_id}")
}

/// Sessions whose token is changed per transaction: short write locks on a big table.
const BATCH: i64 = 500;

pub async fn reseal(db: &Db, keys: &Keyring) -> anyhow::Result<Resealed> {
    let done = Resealed {
        webhook_secrets: reseal_endpoints(db, keys).await?,
        previous_webhook_secrets: super::webhook_endpoints::reseal_previous(db, keys).await?,
        client_tokens: hash_client_tokens(db).await?,
    };
    if done != Resealed::default() && matches!(db, Db::Sqlite { .. }) {
        // The replaced values may still sit in WAL frames: copy them out and empty the WAL.
        // (Freed cells in the pages themselves are zeroed: `secure_delete` in `connect`.)
        truncate_wal(db).await?;
    }
    Ok(done)
}

/// What `PRAGMA wal_checkpoint` answers.
#[derive(diesel::QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

/// A TRUNCATE checkpoint that completed. It answers busy, without waiting, while the
/// background checkpointer (`super::checkpoint`) is in the middle of one of its own; that
/// takes milliseconds, so it is tried again for up to 5 s.
async fn truncate_wal(db: &Db) -> anyhow::Result<()> {
    for _ in 0..500 {
        let row: Checkpointed = with_conn!(db, |conn| {
            diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
                .get_result(conn)
                .await?
        });
        if row.busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("the SQLite WAL could not be emptied after re-sealing secrets (busy for 5 s)")
}

async fn reseal_endpoints(db: &Db, keys: &Keyring) -> anyhow::Result<usize> {
    let current = format!("sealed:v1:{}:%", keys.current_id());
    let rows: Vec<(String, String)> = with_conn!(db, |conn| {
        webhook_endpoints::table
            .filter(webhook_endpoints::secret.not_like(&current))
            // A deleted endpoint's secret is erased: nothing to open.
            .filter(webhook_endpoints::deleted_at.is_null())
            .select((webhook_endpoints::id, webhook_endpoints::secret))
            .load(conn)
            .await?
    });
    let mut changed = 0;
    for (id, stored) in rows {
        let aad = endpoint_aad(&id);
        // A row no key opens stops the start: serving would fail every delivery to it.
        let plain = keys
            .open(&stored, &aad)
            .with_context(|| format!("webhook endpoint {id}: its secret cannot be opened"))?;
        let sealed = keys.seal(&plain, &aad);
        changed += with_tx!(db, |conn| {
            diesel::update(webhook_endpoints::table)
                .filter(webhook_endpoints::id.eq(&id))
                .filter(webhook_endpoints::secret.eq(&stored))
                .set(webhook_endpoints::secret.eq(&sealed))
                .execute(conn)
                .await
                .map_err(crate::error::AppError::from)
        })?;
    }
    Ok(changed)
}

async fn hash_client_tokens(db: &Db) -> anyhow::Result<usize> {
    let mut changed = 0;
    loop {
        // Stored hashes are hex, so only a plaintext token starts with `ct`. The condition is
        // literal SQL, the very predicate of the partial index
        // `sessions_plaintext_client_token`: with a bound parameter neither planner could
        // prove the index applies, and every start would scan the table.
        let rows: Vec<(String, String)> = with_conn!(db, |conn| {
            sessions::table
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "client_token LIKE 'ct_%'",
                ))
                .select((sessions::id, sessions::client_token))
                .limit(BATCH)
                .load(conn)
                .await?
        });
        if rows.is_empty() {
            return Ok(changed);
        }
        changed += with_tx!(db, |conn| {
            let mut n = 0;
            for (id, token) in &rows {
                n += diesel::update(sessions::table)
                    .filter(sessions::id.eq(id))
                    .filter(sessions::client_token.eq(token))
                    .set(sessions::client_token.eq(client_token_hash(token)))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, crate::error::AppError>(n)
        })?;
    }
}
