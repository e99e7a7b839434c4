//! Email addresses and billing details.
use super::Invalid;
use std::collections::BTreeMap;

/// An email address as stored: trimmed and lowercased, so `Foo@Bar.COM` and
/// `foo@bar.com` are the same buyer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Email> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@')?;
        let sane = email.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        sane.then_some(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ISO 3166-1 alpha-2 codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO \
DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM \
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR \
LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL \
NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ \
SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA \
VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Billing details as stored (a JSON object of the non-empty fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct BillingDetail(pub BTreeMap<&'static str, String>);

/// What the request said, before any of it is trusted.
#[derive(Debug, Default)]
pub struct BillingInput {
    pub email: String,
    pub name: String,
    pub country: String,
    pub state: String,
    pub postal_code: String,
    pub line1: String,
    pub city: String,
}

impl BillingDetail {
    /// SPEC: INVALID_ARGUMENT `Invalid billingDetail` followed by the reason, which is also
    /// the field violation.
    pub fn parse(input: &BillingInput) -> Result<BillingDetail, Invalid> {
        let bad = |field: &str, why: &str| Invalid {
            message: format!("Invalid billingDetail: {why}"),
            violations: vec![super::invalid::Violation {
                field: format!("billing_detail.{field}"),
                description: why.into(),
            }],
        };
        let mut out = BTreeMap::new();
        let texts = [
            ("name", &input.name, 200),
            ("state", &input.state, 100),
            ("postal_code", &input.postal_code, 32),
            ("line1", &input.line1, 200),
            ("city", &input.city, 100),
        ];
        for (field, value, max) in texts {
            let v = super::invalid::optional_text(field, value, max)
                .map_err(|e| bad(field, &e.message))?;
            if !v.is_empty() {
                out.insert(field, v);
            }
        }
        if !input.email.trim().is_empty() {
            let email = Email::parse(&input.email)
                .ok_or_else(|| bad("email", "not a valid email address"))?;
            out.insert("email", email.0);
        }
        let country = input.country.trim().to_ascii_uppercase();
        if !country.is_empty() {
            if country.len() != 2 || !COUNTRIES.split(' ').any(|c| c == country) {
                return Err(bad(
                    "country",
                    "country must be an ISO 3166-1 alpha-2 code, e.g. US",
                ));
            }
            if (country == "US" || country == "CA") && !out.contains_key("state") {
                return Err(bad("state", "state is required for US and CA"));
            }
            out.insert("country", country);
        }
        Ok(BillingDetail(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            Email::parse("  Foo@Bar.COM ").unwrap().as_str(),
            "foo@bar.com"
        );
        for bad in ["", "foo", "@bar.com", "foo@bar", "fo o@bar.com", "foo@.com"] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn billing_needs_state_for_us_and_ca() {
        let us = BillingInput {
            country: "us".into(),
            ..Default::default()
        };
        let e = BillingDetail::parse(&us).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid billingDetail: state is required for US and CA"
        );
        let ok = BillingInput {
            country: "US".into(),
            state: "CA".into(),
            ..Default::default()
        };
        assert_eq!(BillingDetail::parse(&ok).unwrap().0["country"], "US");
        let bad = BillingInput {
            country: "XX".into(),
            ..Default::default()
        };
        assert!(BillingDetail::parse(&bad).is_err());
    }
}
