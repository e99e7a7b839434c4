//! Webhook endpoint rules: where the service may be told to POST, and the signing secret.
use super::{Environment, Invalid};
use base64::Engine;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A webhook target URL that passed the SSRF rules at registration. The addresses a
/// hostname resolves to are checked again at send time, since DNS can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str, env: Environment, allow_private: bool) -> Result<Self, Invalid> {
        let bad = |why: &str| Invalid::field("url", format!("url: {why}"));
        let url = url::Url::parse(raw.trim()).map_err(|_| bad("not a valid URL"))?;
        match (url.scheme(), env) {
            ("https", _) | ("http", Environment::Test) => {}
            ("http", Environment::Prod) => return Err(bad("URL scheme must be https in prod")),
            _ => return Err(bad("URL scheme must be https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in the URL are not allowed"));
        }
        if url.fragment().is_some() {
            return Err(bad("a fragment is not allowed"));
        }
        let host = url.host().ok_or_else(|| bad("a host is required"))?;
        let forbidden = match &host {
            url::Host::Domain(d) => {
                // `localhost.` is the same name, fully qualified; and every name under
                // localhost is loopback (RFC 6761), whatever a resolver says.
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            url::Host::Ipv4(ip) => is_forbidden_ip(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => is_forbidden_ip(IpAddr::V6(*ip)),
        };
        if forbidden && !allow_private {
            return Err(forbidden_target());
        }
        Ok(WebhookUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host name, if the host is a name rather than an IP address.
    pub fn domain(&self) -> Option<&str> {
        self.0.domain()
    }
}

/// The refusal of a target that is loopback, private or link-local, by address or by
/// what its name resolves to at registration.
pub fn forbidden_target() -> Invalid {
    Invalid::field(
        "url",
        "url: loopback, private and link-local targets are not allowed",
    )
}

/// Whether a host resolving to `addrs` may not be a webhook target: one forbidden
/// address is enough, since the connection may use any of them.
pub fn resolves_to_forbidden(addrs: &[std::net::SocketAddr], allow_private: bool) -> bool {
    !allow_private && addrs.iter().any(|a| is_forbidden_ip(a.ip()))
}

/// Addresses a webhook must never reach unless the operator allows it: this machine, the
/// private network, link-local (cloud metadata lives there), and other non-public ranges.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_forbidden_v4(v4),
            None => is_forbidden_v6(v6),
        },
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments, 192.0.0.0/24
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let first = seg[0];
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // Addresses that carry an IPv4 address are judged by it: NAT64 (64:ff9b::/96), 6to4
    // (2002::/16) and IPv4-compatible (::/96).
    if first == 0x0064 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return is_forbidden_v4(v4(seg[6], seg[7]));
    }
    if first == 0x2002 {
        return is_forbidden_v4(v4(seg[1], seg[2]));
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        return true;
    }
    ip.is_loopback()
        || (first & 0xffc0) == 0xfec0 // deprecated site-local, fec0::/10
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The Standard Webhooks signature header value: `v1,` + base64 HMAC-SHA256, keyed with the
/// base64-decoded part of the `whsec_` secret, over `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// When to try again after `failures` failed attempts: `base * 2^(failures-1)`, capped at
/// `max`, with ±20 % jitter so endpoints that failed together do not retry together.
pub fn retry_delay(
    failures: u32,
    base: std::time::Duration,
    max: std::time::Duration,
) -> std::time::Duration {
    let exp = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(30))
        .min(max);
    exp.mul_f64(rand::random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let sig = super::sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        use std::time::Duration;
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(3600));
        let d = |n| super::retry_delay(n, base, max).as_secs_f64();
        assert!((4.0..=6.0).contains(&d(1)));
        assert!((32.0..=48.0).contains(&d(4)));
        assert!((2880.0..=4320.0).contains(&d(20)));
    }

    use super::*;

    #[test]
    fn ssrf_targets_are_refused_unless_allowed() {
        for raw in [
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://LocalHost./hook",
            "https://api.localhost./hook",
            "https://10.1.2.3/hook",
            "https://169.254.169.254/latest",
            "https://[::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:192.168.1.1]/hook",
            "https://[64:ff9b::a00:1]/hook",
            "https://[2002:7f00:1::]/hook",
            "https://[::127.0.0.1]/hook",
            "https://[fec0::1]/hook",
            "https://192.0.0.8/hook",
        ] {
            assert!(
                WebhookUrl::parse(raw, Environment::Test, false).is_err(),
                "{raw}"
            );
            assert!(
                WebhookUrl::parse(raw, Environment::Test, true).is_ok(),
                "{raw}"
            );
        }
    }

    #[test]
    fn prod_requires_https() {
        assert!(WebhookUrl::parse("http://hooks.example.com/x", Environment::Prod, false).is_err());
        assert!(WebhookUrl::parse("http://hooks.example.com/x", Environment::Test, false).is_ok());
        assert!(WebhookUrl::parse("https://hooks.example.com/x", Environment::Prod, false).is_ok());
    }
}
