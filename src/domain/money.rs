//! Money: amounts are integers in a currency's minor unit, and every operation is checked,
//! so an overflow is an error and never a wrap.
use super::{quoted, Invalid};

/// An ISO 4217 currency this service knows, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

// Active ISO 4217 codes whose minor unit is not 2 decimals; every other listed code has 2.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR_DECIMAL: &[&str] = &["CLF", "UYW"];
const TWO_DECIMAL: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF",
    "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR",
    "ZMW", "ZWG",
];

impl Currency {
    /// The SPEC's wording for a code that is not three uppercase letters.
    pub fn format_error(raw: &str) -> String {
        format!(
            "Invalid currency format: \"{}\". Must be 3 uppercase letters (e.g., \"USD\", \"EUR\", \"JPY\")",
            quoted(raw)
        )
    }

    /// Three uppercase letters naming a known ISO 4217 currency.
    pub fn parse(field: &str, raw: &str) -> Result<Currency, Invalid> {
        if raw.len() != 3 || !raw.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Invalid::field(field, Self::format_error(raw)));
        }
        let exponent = [
            (ZERO_DECIMAL, 0),
            (TWO_DECIMAL, 2),
            (THREE_DECIMAL, 3),
            (FOUR_DECIMAL, 4),
        ]
        .iter()
        .find(|(codes, _)| codes.contains(&raw))
        .map(|&(_, e)| e)
        .ok_or_else(|| Invalid::field(field, format!("Unknown currency: \"{}\"", quoted(raw))))?;
        let b = raw.as_bytes();
        Ok(Currency {
            code: [b[0], b[1], b[2]],
            exponent,
        })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("ascii")
    }

    /// Digits after the decimal point in the minor unit (JPY 0, USD 2, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A non-negative amount in a currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct MinorUnit(i64);

impl MinorUnit {
    pub const ZERO: MinorUnit = MinorUnit(0);

    pub fn new(field: &str, amount: i64) -> Result<MinorUnit, Invalid> {
        if amount < 0 {
            return Err(Invalid::field(
                field,
                format!("{field} must not be negative"),
            ));
        }
        Ok(MinorUnit(amount))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: MinorUnit) -> Option<MinorUnit> {
        self.0.checked_add(other.0).map(MinorUnit)
    }

    pub fn checked_mul(self, n: i64) -> Option<MinorUnit> {
        self.0.checked_mul(n).filter(|v| *v >= 0).map(MinorUnit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        let exp = |c| Currency::parse("currency", c).unwrap().exponent();
        assert_eq!((exp("JPY"), exp("USD"), exp("KWD")), (0, 2, 3));
    }

    #[test]
    fn currency_format_is_checked_before_membership() {
        let e = Currency::parse("currency", "usd").unwrap_err();
        assert_eq!(e.message, Currency::format_error("usd"));
        let e = Currency::parse("currency", "ABC").unwrap_err();
        assert_eq!(e.message, "Unknown currency: \"ABC\"");
    }

    #[test]
    fn arithmetic_never_wraps() {
        let big = MinorUnit(i64::MAX);
        assert_eq!(big.checked_add(MinorUnit(1)), None);
        assert_eq!(big.checked_mul(2), None);
        assert!(MinorUnit::new("x", -1).is_err());
    }
}
