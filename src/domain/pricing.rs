//! Totals and coupons. All arithmetic is checked: an amount that does not fit is refused
//! (INVALID_ARGUMENT), never wrapped.
use super::{catalog::Discount, money::MinorUnit, quoted, time::Timestamp, Invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: MinorUnit,
    pub discount: MinorUnit,
    pub total: MinorUnit,
}

fn overflow() -> Invalid {
    Invalid::field("lines", "Amount overflow: the order total is too large")
}

pub fn line_total(unit: MinorUnit, quantity: i32) -> Result<MinorUnit, Invalid> {
    unit.checked_mul(i64::from(quantity)).ok_or_else(overflow)
}

pub fn subtotal(line_totals: impl IntoIterator<Item = MinorUnit>) -> Result<MinorUnit, Invalid> {
    line_totals
        .into_iter()
        .try_fold(MinorUnit::ZERO, |acc, t| acc.checked_add(t))
        .ok_or_else(overflow)
}

/// A coupon as stored, for deciding whether it applies.
#[derive(Debug, Clone)]
pub struct CouponTerms {
    pub discount: Discount,
    pub currency: Option<String>,
    pub expires_at: Option<i64>,
    pub minimum_amount: Option<i64>,
}

/// SPEC: `couponCode: <code> (expired)` and friends; `code` as the client sent it.
pub fn coupon_refusal(code: &str, why: &str) -> Invalid {
    Invalid::field(
        "coupon_code",
        format!("couponCode: {} ({why})", quoted(code)),
    )
}

/// The discount a coupon gives on `subtotal`, or why it does not apply. Exhaustion is
/// decided by the reservation, atomically, when the session is written.
pub fn discount(
    code: &str,
    terms: &CouponTerms,
    currency: &str,
    subtotal: MinorUnit,
    now: Timestamp,
) -> Result<MinorUnit, Invalid> {
    if terms.expires_at.is_some_and(|t| t <= now.0) {
        return Err(coupon_refusal(code, "expired"));
    }
    let same_currency = terms.currency.as_deref().is_none_or(|c| c == currency);
    let needs_currency =
        matches!(terms.discount, Discount::AmountOff(_)) || terms.minimum_amount.is_some();
    if needs_currency && !same_currency {
        return Err(coupon_refusal(
            code,
            &format!("not valid for {}", quoted(currency)),
        ));
    }
    if terms.minimum_amount.is_some_and(|m| subtotal.get() < m) {
        return Err(coupon_refusal(code, "does not meet minimum"));
    }
    Ok(match terms.discount {
        // Rounded half up, in i128 so the product cannot overflow.
        Discount::PercentOff(p) => {
            let d = (i128::from(subtotal.get()) * i128::from(p) + 50) / 100;
            MinorUnit::new("discount", i64::try_from(d).map_err(|_| overflow())?)?
        }
        Discount::AmountOff(a) => a.min(subtotal),
    })
}

pub fn totals(subtotal: MinorUnit, discount: MinorUnit) -> Totals {
    let discount = discount.min(subtotal);
    Totals {
        subtotal,
        discount,
        total: MinorUnit::new("total", subtotal.get() - discount.get())
            .expect("discount <= subtotal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(discount: Discount) -> CouponTerms {
        CouponTerms {
            discount,
            currency: None,
            expires_at: None,
            minimum_amount: None,
        }
    }

    #[test]
    fn percent_rounds_half_up_and_hundred_percent_is_free() {
        let m = |v| MinorUnit::new("x", v).unwrap();
        let now = Timestamp(0);
        assert_eq!(
            discount("C", &terms(Discount::PercentOff(10)), "USD", m(1995), now).unwrap(),
            m(200)
        );
        assert_eq!(
            discount("C", &terms(Discount::PercentOff(100)), "USD", m(1999), now).unwrap(),
            m(1999)
        );
        let big = discount(
            "C",
            &terms(Discount::PercentOff(100)),
            "USD",
            m(i64::MAX),
            now,
        )
        .unwrap();
        assert_eq!(totals(m(i64::MAX), big).total, MinorUnit::ZERO);
    }

    #[test]
    fn overflow_is_refused() {
        let m = |v| MinorUnit::new("x", v).unwrap();
        assert!(line_total(m(i64::MAX / 2), 3).is_err());
        assert!(subtotal([m(i64::MAX), m(1)]).is_err());
    }
}
