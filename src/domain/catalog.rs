//! Products, their immutable versions, and coupons.
use super::{
    ids::ProductId,
    invalid::{optional_text, required_text},
    money::{Currency, MinorUnit},
    time::Timestamp,
    Invalid,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingPeriod {
    OneTime,
    Month,
    Year,
}

impl BillingPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingPeriod::OneTime => "one_time",
            BillingPeriod::Month => "month",
            BillingPeriod::Year => "year",
        }
    }

    pub fn from_db(s: &str) -> Option<BillingPeriod> {
        match s {
            "one_time" => Some(BillingPeriod::OneTime),
            "month" => Some(BillingPeriod::Month),
            "year" => Some(BillingPeriod::Year),
            _ => None,
        }
    }
}

pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub requires_server_selection: bool,
}

impl NewProduct {
    pub fn parse(
        name: &str,
        description: &str,
        requires_server_selection: bool,
    ) -> Result<Self, Invalid> {
        Ok(NewProduct {
            name: product_name(name)?,
            description: product_description(description)?,
            requires_server_selection,
        })
    }
}

pub fn product_name(raw: &str) -> Result<String, Invalid> {
    required_text("name", raw, 200)
}

pub fn product_description(raw: &str) -> Result<String, Invalid> {
    optional_text("description", raw, 2000)
}

#[derive(Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub requires_server_selection: Option<bool>,
    pub active: Option<bool>,
}

pub struct NewProductVersion {
    pub product_id: ProductId,
    pub prices: Vec<(Currency, MinorUnit)>,
    pub billing_period: BillingPeriod,
    pub trial_days: i32,
}

impl NewProductVersion {
    pub fn parse(
        product_id: ProductId,
        prices: &[(String, i64)],
        billing_period: BillingPeriod,
        trial_days: i32,
    ) -> Result<Self, Invalid> {
        if prices.is_empty() || prices.len() > 50 {
            return Err(Invalid::field("prices", "prices must have 1 to 50 entries"));
        }
        let mut parsed: Vec<(Currency, MinorUnit)> = Vec::with_capacity(prices.len());
        for (i, (currency, amount)) in prices.iter().enumerate() {
            let at = format!("prices[{i}]");
            let currency = Currency::parse("currency", currency).map_err(|e| e.within(&at))?;
            let amount = MinorUnit::new("unit_amount", *amount).map_err(|e| e.within(&at))?;
            if parsed.iter().any(|(c, _)| *c == currency) {
                return Err(Invalid::field(
                    &at,
                    format!("duplicate price for {currency}"),
                ));
            }
            parsed.push((currency, amount));
        }
        if !(0..=365).contains(&trial_days) {
            return Err(Invalid::field("trial_days", "trial_days must be 0 to 365"));
        }
        if trial_days > 0 && billing_period == BillingPeriod::OneTime {
            return Err(Invalid::field(
                "trial_days",
                "trial_days requires a recurring billing_period (MONTH or YEAR)",
            ));
        }
        Ok(NewProductVersion {
            product_id,
            prices: parsed,
            billing_period,
            trial_days,
        })
    }
}

/// Coupon codes are matched case-insensitively, so they are stored uppercase.
pub fn coupon_code(raw: &str) -> Result<String, Invalid> {
    let code = raw.trim().to_ascii_uppercase();
    let ok = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(code)
    } else {
        Err(Invalid::field(
            "code",
            "code must be 1-64 letters, digits, dashes or underscores",
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    /// 1 to 100.
    PercentOff(i32),
    AmountOff(MinorUnit),
}

pub struct NewCoupon {
    pub code: String,
    pub discount: Discount,
    pub currency: Option<Currency>,
    pub expires_at: Option<Timestamp>,
    pub max_redemptions: Option<i32>,
    pub minimum_amount: Option<MinorUnit>,
}

/// What a coupon request says, before any of it is trusted.
pub struct CouponInput<'a> {
    pub code: &'a str,
    pub percent_off: Option<i32>,
    pub amount_off: Option<i64>,
    pub currency: &'a str,
    pub expires_at: Option<Timestamp>,
    pub max_redemptions: i32,
    pub minimum_amount: i64,
}

impl NewCoupon {
    pub fn parse(input: CouponInput<'_>, now: Timestamp) -> Result<Self, Invalid> {
        let code = coupon_code(input.code)?;
        let discount = match (input.percent_off, input.amount_off) {
            (Some(p), None) if (1..=100).contains(&p) => Discount::PercentOff(p),
            (Some(_), None) => {
                return Err(Invalid::field(
                    "percent_off",
                    "percent_off must be 1 to 100",
                ))
            }
            (None, Some(a)) if a > 0 => Discount::AmountOff(MinorUnit::new("amount_off", a)?),
            (None, Some(_)) => {
                return Err(Invalid::field("amount_off", "amount_off must be positive"))
            }
            _ => {
                return Err(Invalid::field(
                    "discount",
                    "exactly one of percent_off and amount_off is required",
                ))
            }
        };
        let needs_currency = input.amount_off.is_some() || input.minimum_amount != 0;
        let currency = match (input.currency.is_empty(), needs_currency) {
            (true, true) => {
                return Err(Invalid::field(
                    "currency",
                    "currency is required with amount_off or minimum_amount",
                ))
            }
            (true, false) => None,
            (false, _) => Some(Currency::parse("currency", input.currency)?),
        };
        if input.expires_at.is_some_and(|t| t <= now) {
            return Err(Invalid::field(
                "expires_at",
                "expires_at must be in the future",
            ));
        }
        if input.max_redemptions < 0 {
            return Err(Invalid::field(
                "max_redemptions",
                "max_redemptions must not be negative (0: unlimited)",
            ));
        }
        let minimum = MinorUnit::new("minimum_amount", input.minimum_amount)?;
        Ok(NewCoupon {
            code,
            discount,
            currency,
            expires_at: input.expires_at,
            max_redemptions: (input.max_redemptions > 0).then_some(input.max_redemptions),
            minimum_amount: (minimum > MinorUnit::ZERO).then_some(minimum),
        })
    }
}
