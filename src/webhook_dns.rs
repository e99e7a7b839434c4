//! Where a webhook host name points, checked against the SSRF rules
//! (`crate::domain::webhook`) twice: at registration, for early and clear refusal, and at
//! send time by the resolver the dispatcher connects through, since DNS can change.
use crate::domain::{
    webhook::{forbidden_target, resolves_to_forbidden, WebhookUrl},
    Invalid,
};
use std::{net::SocketAddr, time::Duration};

/// How long registration waits for DNS: a slow resolver must not hold the admin call.
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Refuses a registration whose host name resolves to a loopback, private or link-local
/// address (`localhost.`, names from /etc/hosts), with the same message as such an address
/// written in the URL. A name that does not resolve (yet), or not in time, is accepted:
/// registration is not the guard (a name can be pointed elsewhere later; the send-time
/// resolver is), and an endpoint may be registered before its DNS record is published.
pub async fn check_registration(url: &WebhookUrl, allow_private: bool) -> Result<(), Invalid> {
    let Some(host) = url.domain().filter(|_| !allow_private) else {
        return Ok(());
    };
    let lookup = tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, lookup(host));
    match lookup.await {
        Ok(Ok(addrs)) if resolves_to_forbidden(&addrs, allow_private) => Err(forbidden_target()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(%host, error = %e, "webhook host does not resolve at registration");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(%host, "webhook host lookup timed out at registration");
            Ok(())
        }
    }
}

async fn lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

/// Resolves webhook hosts and refuses the delivery if any address is loopback, private,
/// link-local or otherwise non-public (unless the operator allows it). Checking the
/// addresses the connection will actually use defeats DNS names that point inside.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = lookup(name.as_str()).await?;
            if resolves_to_forbidden(&addrs, allow_private) {
                return Err("target refused: the host resolves to a loopback, private or link-local address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
