//! CreateSession's one transaction: claim the idempotency key, lock the lines against the
//! catalog, reserve the coupon, write the session (and, for a free order, the order).
//! Decisions are the domain's; this file fetches facts in batches and writes the result.
use super::{
    outbox,
    schema::{
        coupons, idempotency_keys, orders, product_activations, product_version_prices,
        product_versions, products, session_lines, sessions, store_return_origins, stores,
    },
    sessions::{LineRow, SessionRow, StoredSession},
    stored, Db, InsertBatch,
};
use crate::{
    domain::{
        catalog::{BillingPeriod, Discount},
        checkout::SessionRequest,
        ids::{random_base62, OrderId, SessionId, StoreId},
        lock::{lock_lines, LockedLine, ProductFacts, VersionFacts},
        money::MinorUnit,
        pricing::{self, coupon_refusal, CouponTerms},
        store::{return_url, Origin},
        time::Timestamp,
        Environment, Rejection,
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

fn line_rows(session_id: &str, locked: &[LockedLine]) -> AppResult<Vec<LineRow>> {
    locked
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let r = &l.request;
            Ok(LineRow {
                session_id: session_id.to_owned(),
                position: i as i32,
                product_id: l.product_id,
                product_version_id: l.product_version_id.clone(),
                product_name: l.product_name.clone(),
                unit_amount: l.unit_amount.get(),
                quantity: r.quantity,
                amount_total: pricing::line_total(l.unit_amount, r.quantity)?.get(),
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

pub async fn create(db: &Db, plan: &CreatePlan<'_>) -> AppResult<Created> {
    let req = plan.request;
    let env = plan.environment.as_str();
    let store_id = plan.store_id.as_str();
    let session_id = SessionId::generate().to_string();
    let product_ids = req.product_ids();
    let coupon_code = req.coupon_code.as_deref().map(str::to_ascii_uppercase);
    with_tx!(db, |conn| {
        if let Some(key) = plan.idempotency_key {
            let claimed = diesel::insert_into(idempotency_keys::table)
                .values((
                    idempotency_keys::store_id.eq(store_id),
                    idempotency_keys::environment.eq(env),
                    idempotency_keys::key.eq(key),
                    idempotency_keys::request_hash.eq(plan.fingerprint),
                    idempotency_keys::session_id.eq(&session_id),
                    idempotency_keys::created_at.eq(plan.now.0),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if claimed == 0 {
                let (session_id, fingerprint) = idempotency_keys::table
                    .find((store_id, env, key))
                    .select((idempotency_keys::session_id, idempotency_keys::request_hash))
                    .first::<(String, String)>(conn)
                    .await?;
                return Ok(Created::Replay {
                    session_id,
                    fingerprint,
                });
            }
        }

        let store_name: String = stores::table
            .find(store_id)
            .select(stores::name)
            .first(conn)
            .await?;
        let origins: Vec<Origin> = store_return_origins::table
            .filter(store_return_origins::store_id.eq(store_id))
            .select(store_return_origins::origin)
            .load::<String>(conn)
            .await?
            .into_iter()
            .map(Origin::from_trusted)
            .collect();
        if origins.is_empty() {
            return Err(Rejection::Precondition(
                "API checkout is not enabled for this store.".into(),
            )
            .into());
        }
        let urls = [
            ("successUrl", "success_url", &req.success_url),
            ("cancelUrl", "cancel_url", &req.cancel_url),
        ];
        let mut checked = Vec::with_capacity(2);
        for (label, field, url) in urls {
            let url = url
                .as_deref()
                .map(|u| return_url(label, field, u, &origins, plan.environment))
                .transpose()?;
            checked.push(url);
        }

        // One query for every product of the request, with the version sold in this
        // environment and its price in the session's currency.
        let rows: Vec<ProductRow> = products::table
            .left_join(
                product_activations::table.on(product_activations::product_id
                    .eq(products::id)
                    .and(product_activations::environment.eq(env))),
            )
            .left_join(
                product_versions::table
                    .on(product_versions::id.eq(product_activations::product_version_id)),
            )
            .left_join(
                product_version_prices::table.on(product_version_prices::product_version_id
                    .eq(product_versions::id)
                    .and(product_version_prices::currency.eq(&req.currency))),
            )
            .filter(products::id.eq_any(&product_ids))
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
            .load(conn)
            .await?;
        let locked = lock_lines(req, store_id, &facts(rows)?)?;
        let lines = line_rows(&session_id, &locked)?;
        let line_totals = locked
            .iter()
            .map(|l| pricing::line_total(l.unit_amount, l.request.quantity))
            .collect::<Result<Vec<_>, _>>()?;
        let subtotal = pricing::subtotal(line_totals)?;

        let mut coupon_id = None;
        let mut discount = MinorUnit::ZERO;
        if let (Some(code), Some(given)) = (&coupon_code, &req.coupon_code) {
            let coupon = coupons::table
                .filter(coupons::store_id.eq(store_id))
                .filter(coupons::code.eq(code))
                .select((
                    coupons::id,
                    coupons::percent_off,
                    coupons::amount_off,
                    coupons::currency,
                    coupons::expires_at,
                    coupons::minimum_amount,
                ))
                .first::<(
                    String,
                    Option<i32>,
                    Option<i64>,
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                )>(conn)
                .await
                .optional()?
                .ok_or_else(|| coupon_refusal(given, "not found"))?;
            let (id, percent_off, amount_off, currency, expires_at, minimum_amount) = coupon;
            let terms = CouponTerms {
                discount: match (percent_off, amount_off) {
                    (Some(p), _) => Discount::PercentOff(p),
                    (None, a) => {
                        Discount::AmountOff(MinorUnit::new("amount_off", stored("coupon", a)?)?)
                    }
                },
                currency,
                expires_at,
                minimum_amount,
            };
            discount = pricing::discount(given, &terms, &req.currency, subtotal, plan.now)?;
            // The reservation is one conditional UPDATE: concurrent sessions queue on the
            // coupon row and can never push it past max_redemptions.
            let reserved = diesel::update(coupons::table.find(&id))
                .filter(
                    coupons::max_redemptions
                        .is_null()
                        .or(coupons::redemptions.lt(coupons::max_redemptions.assume_not_null())),
                )
                .set(coupons::redemptions.eq(coupons::redemptions + 1))
                .execute(conn)
                .await?;
            if reserved == 0 {
                return Err(coupon_refusal(given, "exhausted").into());
            }
            coupon_id = Some(id);
        }
        let totals = pricing::totals(subtotal, discount);
        let free = totals.total == MinorUnit::ZERO;
        let order_id = free.then(|| OrderId::generate().to_string());
        let [success_url, cancel_url]: [Option<String>; 2] = checked.try_into().expect("two URLs");
        let session = SessionRow {
            id: session_id.clone(),
            store_id: store_id.to_owned(),
            environment: env.to_owned(),
            status: if free { "completed" } else { "open" }.to_owned(),
            currency: req.currency.clone(),
            amount_subtotal: totals.subtotal.get(),
            amount_discount: totals.discount.get(),
            amount_total: totals.total.get(),
            success_url,
            cancel_url,
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
            coupon_id,
            coupon_code: coupon_code.clone(),
            store_name,
            with_trial: req.with_trial,
            client_token: format!("ct_{}", random_base62(43)),
            order_id: order_id.clone(),
            created_at: plan.now.0,
            expires_at: plan.now.0 + req.ttl_seconds * 1_000_000,
            completed_at: free.then_some(plan.now.0),
            ended_at: free.then_some(plan.now.0),
        };
        diesel::insert_into(sessions::table)
            .values(&session)
            .execute(conn)
            .await?;
        conn.insert_batch(diesel::insert_into(session_lines::table).values(lines.clone()))
            .await?;
        if let Some(order_id) = &order_id {
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
                    orders::created_at.eq(plan.now.0),
                ))
                .execute(conn)
                .await?;
            record_event!(
                conn,
                &outbox::event(outbox::ORDER_COMPLETED, &session, &lines, plan.now)?
            );
        }
        Ok(Created::New(Box::new(StoredSession { session, lines })))
    })
}
