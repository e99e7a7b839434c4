//! Identifiers. Public ids carry a type prefix so a store id can never be mistaken for a
//! session id, and the random part has at least 128 bits so ids cannot be guessed.
use rand::{distr::Alphanumeric, Rng};

/// Random base62 characters; 22 of them carry 130 bits.
pub fn random_base62(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

const RANDOM_LEN: usize = 22;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, random_base62(RANDOM_LEN)))
            }

            /// Accepts only ids of the form this service hands out.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| $name(s.to_owned()))
            }

            /// For values read back from the database, which only ever holds ids made here.
            pub fn from_trusted(s: String) -> Self {
                $name(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(StoreId, "st_");
prefixed_id!(ApiKeyId, "key_");
prefixed_id!(ProductVersionId, "pv_");
prefixed_id!(CouponId, "cpn_");
prefixed_id!(
    /// `cs_` + 22 base62 characters (130 random bits).
    SessionId,
    "cs_"
);
prefixed_id!(OrderId, "ord_");
prefixed_id!(WebhookEndpointId, "we_");
prefixed_id!(WebhookDeliveryId, "whd_");
prefixed_id!(
    /// A webhook event (the Standard Webhooks `webhook-id`, stable across retries).
    WebhookEventId,
    "msg_"
);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A product's numeric id; its public form is the short id `PROD_<base62>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductId(i64);

impl ProductId {
    pub const PREFIX: &'static str = "PROD_";

    /// A random positive id: unguessable, and no sequence leaks how many products exist.
    pub fn generate() -> Self {
        ProductId(rand::rng().random_range(1..=i64::MAX))
    }

    pub fn from_db(id: i64) -> Self {
        ProductId(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn short_id(self) -> String {
        let mut n = self.0 as u64;
        let mut digits = Vec::with_capacity(11);
        loop {
            digits.push(BASE62[(n % 62) as usize]);
            n /= 62;
            if n == 0 {
                break;
            }
        }
        digits.reverse();
        format!(
            "{}{}",
            Self::PREFIX,
            String::from_utf8(digits).expect("ascii")
        )
    }

    /// Decodes `PROD_<base62>`; `None` for a bad prefix, a bad digit or a value out of range.
    pub fn parse(s: &str) -> Option<Self> {
        let digits = s.strip_prefix(Self::PREFIX)?;
        if digits.is_empty() || digits.len() > 11 {
            return None;
        }
        let mut n: i64 = 0;
        for b in digits.bytes() {
            let d = BASE62.iter().position(|&c| c == b)? as i64;
            n = n.checked_mul(62)?.checked_add(d)?;
        }
        // A leading zero would give two spellings of one id.
        (n > 0 && !digits.starts_with('0')).then_some(ProductId(n))
    }
}

impl std::fmt::Display for ProductId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_short_ids_round_trip() {
        for id in [1, 61, 62, 3844, i64::MAX] {
            let p = ProductId(id);
            assert_eq!(ProductId::parse(&p.short_id()), Some(p), "{}", p.short_id());
        }
        assert_eq!(ProductId(61).short_id(), "PROD_z");
    }

    #[test]
    fn bad_short_ids_are_rejected() {
        for s in [
            "",
            "PROD_",
            "prod_1",
            "PROD_-1",
            "PROD_0",
            "PROD_01",
            "PROD_zzzzzzzzzzzz",
        ] {
            assert_eq!(ProductId::parse(s), None, "{s}");
        }
        // One past i64::MAX overflows.
        assert_eq!(ProductId::parse("PROD_AzL8n0Y58m8"), None);
    }

    #[test]
    fn prefixed_ids_parse_only_their_own_shape() {
        let s = SessionId::generate();
        assert_eq!(SessionId::parse(s.as_str()), Some(s.clone()));
        assert!(StoreId::parse(s.as_str()).is_none());
        assert!(SessionId::parse("cs_short").is_none());
    }
}
