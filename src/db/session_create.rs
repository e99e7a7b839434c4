//! CreateSession's one transaction, in phases: read every fact (and claim the idempotency
//! key) in one round trip, decide in the domain (`domain::session_plan`), then reserve the
//! coupon and write the session in one more. With BEGIN and COMMIT that is four round trips
//! on PostgreSQL (pipelined statements travel together); SQLite runs the same statements
//! inline, one after the other.
use super::{
    feed::{FeedBatch, RecordFeed},
    optional, outbox,
    schema::{
        coupons, idempotency_keys, orders, product_activations, product_version_prices,
        product_versions, products, sessions, store_return_origins, stores,
    },
    sessions::{InsertLines, LineRow, SessionRow, StoredSession},
    stored, Db,
};
use crate::{
    domain::{
        catalog::{BillingPeriod, Discount},
        checkout::SessionRequest,
        feed::EventKind,
        ids::{OrderId, SessionId, StoreId},
        lock::{ProductFacts, VersionFacts},
        money::MinorUnit,
        pricing::{coupon_refusal, CouponTerms},
        session_plan::{plan_session, CreateFacts, SessionPlan, StoredCoupon},
        store::Origin,
        time::Timestamp,
        Environment,
    },
    error::{AppError, AppResult},
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

pub struct CreatePlan<'a> {
    pub request: &'a SessionRequest,
    pub store_id: &'a StoreId,
    pub environment: Environment,
    pub idempotency_key: Option<&'a str>,
    pub fingerprint: &'a str,
    pub now: Timestamp,
    /// Derives the session's client token, of which only the hash is stored.
    pub keys: &'a crate::secrets::Keyring,
}

pub enum Created {
    New(Box<StoredSession>),
    /// The key was claimed before: the earlier session and the fingerprint it was made with.
    Replay {
        session_id: String,
        fingerprint: String,
    },
}

type ProductRow = (
    i64,
    String,
    String,
    bool,
    bool,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i64>,
);

fn facts(rows: Vec<ProductRow>) -> AppResult<HashMap<i64, ProductFacts>> {
    let mut out = HashMap::with_capacity(rows.len());
    for (
        id,
        store_id,
        name,
        active,
        requires_server_selection,
        version_id,
        period,
        trial_days,
        amount,
    ) in rows
    {
        let version = match (version_id, period, trial_days) {
            (Some(id), Some(period), Some(trial_days)) => Some(VersionFacts {
                id,
                billing_period: stored("billing_period", BillingPeriod::from_db(&period))?,
                trial_days,
                unit_amount: amount,
            }),
            _ => None,
        };
        out.insert(
            id,
            ProductFacts {
                store_id,
                name,
                active,
                requires_server_selection,
                version,
            },
        );
    }
    Ok(out)
}

fn to_json(map: &impl serde::Serialize) -> AppResult<String> {
    serde_json::to_string(map).map_err(|e| AppError::internal(format!("encoding JSON: {e}")))
}

fn line_rows(session_id: &str, plan: &SessionPlan) -> AppResult<Vec<LineRow>> {
    plan.lines
        .iter()
        .zip(&plan.line_totals)
        .enumerate()
        .map(|(i, (l, total))| {
            let r = &l.request;
            Ok(LineRow {
                session_id: session_id.to_owned(),
                position: i as i32,
                product_id: l.product_id,
                product_version_id: l.product_version_id.clone(),
                product_name: l.product_name.clone(),
                unit_amount: l.unit_amount.get(),
                quantity: r.quantity,
                amount_total: total.get(),
                billing_period: l.billing_period.as_str().to_owned(),
                trial_days: l.trial_days,
                subscription: r.subscription,
                server_id: r.server_id.clone(),
                gift_to_platform: r.gift_to.as_ref().map(|g| g.0.clone()),
                gift_to_id: r.gift_to.as_ref().map(|g| g.1.clone()),
                custom_variables: to_json(&r.custom_variables)?,
                metadata: to_json(&r.metadata)?,
            })
        })
        .collect()
}

/// The session row a plan becomes.
fn session_row(
    create: &CreatePlan<'_>,
    plan: &SessionPlan,
    session_id: &str,
    store_name: String,
) -> AppResult<SessionRow> {
    let req = create.request;
    let now = create.now.0;
    let free = plan.is_free();
    Ok(SessionRow {
        id: session_id.to_owned(),
        store_id: create.store_id.to_string(),
        environment: create.environment.as_str().to_owned(),
        status: if free { "completed" } else { "open" }.to_owned(),
        currency: req.currency.clone(),
        amount_subtotal: plan.totals.subtotal.get(),
        amount_discount: plan.totals.discount.get(),
        amount_total: plan.totals.total.get(),
        success_url: plan.success_url.clone(),
        cancel_url: plan.cancel_url.clone(),
        auto_redirect: req.auto_redirect,
        customer_id: req.customer_id.clone(),
        buyer_email: req.buyer_email.as_ref().map(|e| e.as_str().to_owned()),
        billing_detail: req
            .billing_detail
            .as_ref()
            .map(|b| to_json(&b.0))
            .transpose()?,
        metadata: to_json(&req.metadata)?,
        order_merchant_external_id: req.order_merchant_external_id.clone(),
        affiliate_code: req.affiliate_code.clone(),
        coupon_id: plan.coupon_id.clone(),
        coupon_code: req.coupon_code.as_deref().map(str::to_ascii_uppercase),
        store_name,
        with_trial: req.with_trial,
        client_token: create.keys.client_token_hash(session_id),
        order_id: free.then(|| OrderId::generate().to_string()),
        created_at: now,
        expires_at: now + req.ttl_seconds * 1_000_000,
        completed_at: free.then_some(now),
        ended_at: free.then_some(now),
    })
}

type CouponRow = (
    String,
    Option<i32>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn stored_coupon(row: CouponRow) -> AppResult<StoredCoupon> {
    let (id, percent_off, amount_off, currency, expires_at, minimum_amount) = row;
    let discount = match (percent_off, amount_off) {
        (Some(p), _) => Discount::PercentOff(p),
        (None, a) => Discount::AmountOff(MinorUnit::new("amount_off", stored("coupon", a)?)?),
    };
    Ok(StoredCoupon {
        id,
        terms: CouponTerms {
            discount,
            currency,
            expires_at,
            minimum_amount,
        },
    })
}

/// Products with the version sold in `$env` and its price in `$currency`, written once for
/// both backends; callers add the filter on `products::id`.
macro_rules! catalog_facts {
    ($env:expr, $currency:expr) => {
        products::table
            .left_join(
                product_activations::table.on(product_activations::product_id
                    .eq(products::id)
                    .and(product_activations::environment.eq($env))),
            )
            .left_join(
                product_versions::table
                    .on(product_versions::id.eq(product_activations::product_version_id)),
            )
            .left_join(
                product_version_prices::table.on(product_version_prices::product_version_id
                    .eq(product_versions::id)
                    .and(product_version_prices::currency.eq($currency))),
            )
            .select((
                products::id,
                products::store_id,
                products::name,
                products::active,
                products::requires_server_selection,
                product_versions::id.nullable(),
                product_versions::billing_period.nullable(),
                product_versions::trial_days.nullable(),
                product_version_prices::unit_amount.nullable(),
            ))
    };
}

/// Every product of a request, as one element of a `pipeline!`, in statements that stay
/// prepared: PostgreSQL takes the ids as one array (`= ANY($1)`), while SQLite's `IN (…)`
/// changes shape with their number, so there each product is its own (inline) lookup.
trait LoadProducts {
    type Future;
    fn load_products(self, env: &str, currency: &str, ids: &[i64]) -> Self::Future;
}

type Loaded<'a> = futures_util::future::BoxFuture<'a, diesel::QueryResult<Vec<ProductRow>>>;

impl<'a> LoadProducts for &mut &'a diesel_async::AsyncPgConnection {
    type Future = Loaded<'a>;
    fn load_products(self, env: &str, currency: &str, ids: &[i64]) -> Loaded<'a> {
        let mut conn = *self; // the shared reference, which lives for 'a
        let (env, currency, ids) = (env.to_owned(), currency.to_owned(), ids.to_vec());
        // The query owns its values: the future outlives this call.
        let query = catalog_facts!(env, currency).filter(products::id.eq_any(ids));
        Box::pin(async move { query.load(&mut conn).await })
    }
}

impl<'c> LoadProducts for &'c mut super::SqliteConn {
    type Future = Loaded<'c>;
    fn load_products(self, env: &str, currency: &str, ids: &[i64]) -> Loaded<'c> {
        let (env, currency, ids) = (env.to_owned(), currency.to_owned(), ids.to_vec());
        self.spawn_blocking(move |c| {
            use diesel::RunQueryDsl as Sync;
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                let query = catalog_facts!(env.clone(), currency.clone());
                rows.extend(Sync::load::<ProductRow>(
                    query.filter(products::id.eq(id)),
                    c,
                )?);
            }
            Ok(rows)
        })
    }
}

pub async fn create(db: &Db, create: &CreatePlan<'_>) -> AppResult<Created> {
    let req = create.request;
    let env = create.environment.as_str();
    let store_id = create.store_id.as_str();
    let session_id = SessionId::generate().to_string();
    let product_ids = req.product_ids();
    let coupon_code = req.coupon_code.as_deref().map(str::to_ascii_uppercase);
    let key = create.idempotency_key;
    with_tx!(db, |conn| {
        // Round trip 1. The key is claimed first: a concurrent request with the same key
        // waits here for the first one's commit, and the SELECT after it then sees who won.
        let (_, claim, store_name, origins, products, coupon) = pipeline!(c => [
            optional(key.map(|key| {
                diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::store_id.eq(store_id),
                        idempotency_keys::environment.eq(env),
                        idempotency_keys::key.eq(key),
                        idempotency_keys::request_hash.eq(create.fingerprint),
                        idempotency_keys::session_id.eq(&session_id),
                        idempotency_keys::created_at.eq(create.now.0),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)
            })),
            optional(key.map(|key| {
                idempotency_keys::table
                    .find((store_id, env, key))
                    .select((idempotency_keys::session_id, idempotency_keys::request_hash))
                    .load::<(String, String)>(c)
            })),
            stores::table
                .find(store_id)
                .select(stores::name)
                .load::<String>(c),
            store_return_origins::table
                .filter(store_return_origins::store_id.eq(store_id))
                .select(store_return_origins::origin)
                .load::<String>(c),
            c.load_products(env, &req.currency, &product_ids),
            optional(coupon_code.as_ref().map(|code| {
                coupons::table
                    .filter(coupons::store_id.eq(store_id))
                    .filter(coupons::code.eq(code))
                    // A deactivated coupon is refused like an unknown code.
                    .filter(coupons::active.eq(true))
                    .select((
                        coupons::id,
                        coupons::percent_off,
                        coupons::amount_off,
                        coupons::currency,
                        coupons::expires_at,
                        coupons::minimum_amount,
                    ))
                    .load::<CouponRow>(c)
            }))
        ]);
        if let Some((owner, fingerprint)) = claim.and_then(|rows| rows.into_iter().next()) {
            if owner != session_id {
                return Ok(Created::Replay {
                    session_id: owner,
                    fingerprint,
                });
            }
        }

        // Decide. A refusal rolls the transaction back: no key, no reservation, nothing.
        let origins: Vec<Origin> = origins.into_iter().map(Origin::from_trusted).collect();
        let coupon = coupon
            .and_then(|rows| rows.into_iter().next())
            .map(stored_coupon)
            .transpose()?;
        let products = facts(products)?;
        let facts = CreateFacts {
            store_id,
            environment: create.environment,
            origins: &origins,
            products: &products,
            coupon: coupon.as_ref(),
        };
        let plan = plan_session(req, &facts, create.now)?;
        let store_name = store_name
            .into_iter()
            .next()
            .ok_or_else(|| AppError::internal("the caller's store is gone"))?;
        let session = session_row(create, &plan, &session_id, store_name)?;
        let lines = line_rows(&session_id, &plan)?;

        // Round trip 2. The reservation is one conditional UPDATE: concurrent sessions queue
        // on the coupon row and can never push it past max_redemptions. When none is left,
        // returning the refusal rolls back the rows written next to it. The feed event
        // goes with them (db::feed), except for a free order, which writes its order
        // first and records both of its events after it.
        let mut feed =
            FeedBatch::new(store_id, env, create.now.0).with(EventKind::Created, &session_id);
        let free = session.order_id.is_some();
        let (reserved, _, _, _) = pipeline!(c => [
            optional(plan.coupon_id.as_ref().map(|id| {
                diesel::update(coupons::table.find(id))
                    .filter(coupons::max_redemptions.is_null().or(
                        coupons::redemptions.lt(coupons::max_redemptions.assume_not_null()),
                    ))
                    .set(coupons::redemptions.eq(coupons::redemptions + 1))
                    .execute(c)
            })),
            diesel::insert_into(sessions::table)
                .values(&session)
                .execute(c),
            c.insert_lines(&lines),
            optional((!free).then(|| c.record_feed(&feed)))
        ]);
        if reserved == Some(0) {
            let given = req.coupon_code.as_deref().unwrap_or_default();
            return Err(coupon_refusal(given, "exhausted").into());
        }
        if let Some(order_id) = &session.order_id {
            diesel::insert_into(orders::table)
                .values((
                    orders::id.eq(order_id),
                    orders::session_id.eq(&session.id),
                    orders::store_id.eq(store_id),
                    orders::environment.eq(env),
                    orders::currency.eq(&session.currency),
                    orders::amount_subtotal.eq(session.amount_subtotal),
                    orders::amount_discount.eq(session.amount_discount),
                    orders::amount_total.eq(session.amount_total),
                    orders::order_merchant_external_id.eq(&session.order_merchant_external_id),
                    orders::created_at.eq(create.now.0),
                ))
                .execute(conn)
                .await?;
            record_event!(
                conn,
                &outbox::event(outbox::ORDER_COMPLETED, &session, &lines, create.now)?
            );
            feed = feed.with(EventKind::Completed, &session.id);
            conn.record_feed(&feed).await?;
        }
        Ok(Created::New(Box::new(StoredSession { session, lines })))
    })
}
