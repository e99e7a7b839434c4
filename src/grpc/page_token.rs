//! Opaque page tokens for keyset pagination. A token names where the next page starts and
//! a digest of the filters it was made for, so it cannot be replayed with other filters.
use crate::domain::Invalid;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageToken {
    /// The sort timestamp of the last item served.
    pub at: i64,
    /// The id of the last item served (the tie-breaker).
    pub id: String,
    filters: String,
}

/// A short digest of the filters of a list request.
pub fn filters_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

impl PageToken {
    pub fn new(at: i64, id: String, filters: String) -> Self {
        PageToken { at, id, filters }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("serializable"))
    }

    /// `None` for an empty token (the first page).
    pub fn decode(token: &str, filters: &str) -> Result<Option<PageToken>, Invalid> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Invalid::field("page_token", "Invalid page_token");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let t: PageToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if t.filters != filters {
            return Err(Invalid::field(
                "page_token",
                "page_token was made for other filters; repeat the request's filters",
            ));
        }
        Ok(Some(t))
    }
}
