//! CreateSession's decision, as a pure function: given the request and what the database
//! said (the store's origins, the products, the coupon), what the session will be — or why
//! there will be none. The database code reads the facts in one round trip before and
//! writes the plan in one round trip after; every rule lives here.
use super::{
    checkout::SessionRequest,
    lock::{lock_lines, LockedLine, ProductFacts},
    money::MinorUnit,
    pricing::{self, coupon_refusal, CouponTerms, Totals},
    store::{return_url, Origin},
    time::Timestamp,
    Environment, Rejection,
};
use std::collections::HashMap;

/// A coupon of the store with the code the request names.
#[derive(Debug, Clone)]
pub struct StoredCoupon {
    pub id: String,
    pub terms: CouponTerms,
}

/// What the database holds that the decision depends on.
pub struct CreateFacts<'a> {
    pub store_id: &'a str,
    pub environment: Environment,
    pub origins: &'a [Origin],
    pub products: &'a HashMap<i64, ProductFacts>,
    /// `None`: no coupon of that code (or none asked for).
    pub coupon: Option<&'a StoredCoupon>,
}

/// The session to write.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub lines: Vec<LockedLine>,
    pub line_totals: Vec<MinorUnit>,
    pub totals: Totals,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// The coupon to reserve one redemption of, atomically, with the write. Whether one is
    /// left is known only then: that refusal (`exhausted`) is the write's to make.
    pub coupon_id: Option<String>,
}

impl SessionPlan {
    /// A total of zero completes at once, with its order.
    pub fn is_free(&self) -> bool {
        self.totals.total == MinorUnit::ZERO
    }
}

/// Every rule that needs the database's facts, in the order the SPEC's error table lists
/// them: return URLs against the store's origins, then the lines against the catalog, then
/// the totals, then the coupon.
pub fn plan_session(
    req: &SessionRequest,
    facts: &CreateFacts<'_>,
    now: Timestamp,
) -> Result<SessionPlan, Rejection> {
    if facts.origins.is_empty() {
        return Err(Rejection::Precondition(
            "API checkout is not enabled for this store.".into(),
        ));
    }
    let url = |label, field, url: &Option<String>| {
        url.as_deref()
            .map(|u| return_url(label, field, u, facts.origins, facts.environment))
            .transpose()
    };
    let success_url = url("successUrl", "success_url", &req.success_url)?;
    let cancel_url = url("cancelUrl", "cancel_url", &req.cancel_url)?;

    let lines = lock_lines(req, facts.store_id, facts.products)?;
    let line_totals = lines
        .iter()
        .map(|l| pricing::line_total(l.unit_amount, l.request.quantity))
        .collect::<Result<Vec<_>, _>>()?;
    let subtotal = pricing::subtotal(line_totals.iter().copied())?;

    let (coupon_id, discount) = match &req.coupon_code {
        None => (None, MinorUnit::ZERO),
        Some(given) => {
            let coupon = facts
                .coupon
                .ok_or_else(|| coupon_refusal(given, "not found"))?;
            let discount = pricing::discount(given, &coupon.terms, &req.currency, subtotal, now)?;
            (Some(coupon.id.clone()), discount)
        }
    };
    Ok(SessionPlan {
        lines,
        line_totals,
        totals: pricing::totals(subtotal, discount),
        success_url,
        cancel_url,
        coupon_id,
    })
}
