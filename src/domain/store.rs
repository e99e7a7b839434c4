//! Stores, their return-URL origins and their credentials.
use super::{invalid::required_text, quoted, Environment, Invalid};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The publishable store handle: 3–63 lowercase letters, digits and inner dashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Slug, Invalid> {
        let ok_len = (3..=63).contains(&raw.len());
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ends = !raw.starts_with('-') && !raw.ends_with('-');
        if ok_len && ok_chars && ok_ends {
            Ok(Slug(raw.to_owned()))
        } else {
            Err(Invalid::field(
                "slug",
                "slug must be 3-63 lowercase letters, digits or dashes, not starting or ending with a dash",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn store_name(raw: &str) -> Result<String, Invalid> {
    required_text("name", raw, 200)
}

/// A return-URL origin, `scheme://host[:port]`, in the browser's serialization (lowercase
/// host, default port dropped), so comparing origins is comparing strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Origin(String);

/// Hosts for which plain http is tolerated (SPEC: localhost / 127.0.0.1): a developer's
/// own machine, named exactly.
pub fn is_local_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => *ip == std::net::Ipv4Addr::LOCALHOST,
        url::Host::Ipv6(_) => false,
    }
}

impl Origin {
    pub fn parse(field: &str, raw: &str) -> Result<Origin, Invalid> {
        let bad = |why: &str| Invalid::field(field, format!("{field}: {why}"));
        let url = url::Url::parse(raw.trim()).map_err(|_| bad("not a valid origin URL"))?;
        let host = url.host().ok_or_else(|| bad("origin must have a host"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_local_host(&host) => {}
            "http" => return Err(bad("URL scheme must be https (http only for localhost)")),
            _ => return Err(bad("URL scheme must be https")),
        }
        let has_extra = !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some();
        if has_extra {
            return Err(bad(
                "an origin is scheme://host[:port] without path, query or credentials",
            ));
        }
        Ok(Origin(url.origin().ascii_serialization()))
    }

    pub fn from_trusted(s: String) -> Origin {
        Origin(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses, normalizes and de-duplicates a list of origins (at most 20).
pub fn origins(raw: &[String]) -> Result<Vec<Origin>, Invalid> {
    if raw.len() > 20 {
        return Err(Invalid::field(
            "allowed_return_origins",
            "at most 20 allowed_return_origins",
        ));
    }
    let mut out = raw
        .iter()
        .enumerate()
        .map(|(i, o)| Origin::parse(&format!("allowed_return_origins[{i}]"), o))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

pub struct NewStore {
    pub slug: Slug,
    pub name: String,
    pub active: bool,
    pub approved_for_prod: bool,
    pub origins: Vec<Origin>,
}

/// Fields named in an update mask; `None` leaves the stored value as it is.
#[derive(Default)]
pub struct StorePatch {
    pub slug: Option<Slug>,
    pub name: Option<String>,
    pub active: Option<bool>,
    pub approved_for_prod: Option<bool>,
    pub origins: Option<Vec<Origin>>,
}

/// A secret API key, `sk_test_…` / `sk_prod_…` followed by 43 base62 characters (256 bits).
/// Only its SHA-256 is stored: a fast hash is right here because the secret is random and
/// long, so there is nothing to brute-force.
pub struct ApiKeySecret(String);

const KEY_RANDOM_LEN: usize = 43;

impl ApiKeySecret {
    pub fn generate(env: Environment) -> ApiKeySecret {
        ApiKeySecret(format!(
            "sk_{}_{}",
            env.as_str(),
            super::ids::random_base62(KEY_RANDOM_LEN)
        ))
    }

    /// The environment named by a well-formed key; `None` for anything malformed.
    pub fn environment_of(token: &str) -> Option<Environment> {
        let (env, rest) = if let Some(rest) = token.strip_prefix("sk_test_") {
            (Environment::Test, rest)
        } else {
            (Environment::Prod, token.strip_prefix("sk_prod_")?)
        };
        (rest.len() == KEY_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then_some(env)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash_secret(&self.0)
    }

    /// What ListApiKeys shows to tell keys apart: `sk_test_` plus 4 of the 43 random
    /// characters (about 24 of 256 bits), far too little to use or guess the key.
    pub fn prefix(&self) -> String {
        let env_part = self.0.len() - KEY_RANDOM_LEN;
        self.0[..env_part + 4].to_owned()
    }
}

/// Hex SHA-256, the stored form of a key.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two secrets of any length: both are hashed first, so neither
/// the content nor the length of the expected value leaks through timing.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// A success or cancel URL: https (http only for localhost in `test`), on an allow-listed
/// origin. Returns the URL as given (trimmed), so `{CHECKOUT_SESSION_ID}` and `{ORDER_ID}`
/// placeholders survive; `label` is the SPEC's field name (`successUrl`, `cancelUrl`).
pub fn return_url(
    label: &str,
    field: &str,
    raw: &str,
    allowed: &[Origin],
    env: Environment,
) -> Result<String, Invalid> {
    let bad = |why: String| Invalid::field(field, format!("{label}: {why}"));
    let raw = raw.trim();
    // Characters that parsers disagree on have no place in a redirect target.
    if raw.len() > 2048
        || raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(bad("not a valid URL".into()));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("not a valid URL".into()))?;
    let http_ok = env == Environment::Test && url.host().is_some_and(|h| is_local_host(&h));
    if url.scheme() != "https" && !(url.scheme() == "http" && http_ok) {
        return Err(bad("URL scheme must be https".into()));
    }
    if url.host().is_none() {
        return Err(bad("not a valid URL".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not allowed".into()));
    }
    let origin = url.origin().ascii_serialization();
    if !allowed.iter().any(|o| o.as_str() == origin) {
        return Err(bad(format!(
            "URL origin ({}) is not in the allow-list",
            quoted(&origin)
        )));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        let o = Origin::parse("o", "HTTPS://Shop.Example.com:443/").unwrap();
        assert_eq!(o.as_str(), "https://shop.example.com");
        let o = Origin::parse("o", "http://localhost:3000").unwrap();
        assert_eq!(o.as_str(), "http://localhost:3000");
    }

    #[test]
    fn bad_origins_are_refused() {
        for raw in [
            "http://shop.example.com",
            "https://shop.example.com/path",
            "https://user:pw@shop.example.com",
            "ftp://shop.example.com",
            "shop.example.com",
        ] {
            assert!(Origin::parse("o", raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn api_keys_name_their_environment() {
        let k = ApiKeySecret::generate(Environment::Prod);
        assert_eq!(
            ApiKeySecret::environment_of(k.expose()),
            Some(Environment::Prod)
        );
        assert_eq!(ApiKeySecret::environment_of("sk_test_short"), None);
        assert_eq!(k.hash().len(), 64);
        assert!(secrets_match("abc", "abc") && !secrets_match("abc", "abd"));
    }
}
