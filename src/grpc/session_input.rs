//! CreateSessionRequest → domain input, applying the caller's rights: a publishable store
//! slug silently loses the fields that could tamper with price or session (SPEC section 3)
//! and may not send inline products.
use super::{auth::Credential, convert};
use crate::{
    domain::{
        checkout::{InlineInput, LineInput, SessionInput, StringMap},
        email::BillingInput,
    },
    error::{AppError, AppResult},
    pb,
};

fn sorted(map: std::collections::HashMap<String, String>) -> StringMap {
    map.into_iter().collect()
}

pub fn session_input(
    r: pb::CreateSessionRequest,
    credential: &Credential,
) -> AppResult<SessionInput> {
    let full = matches!(credential, Credential::ApiKey(_));
    if !full && r.lines.iter().any(|l| l.inline_product.is_some()) {
        return Err(AppError::PermissionDenied(
            "inline_product requires a secret API key; a store slug may only sell catalog products"
                .into(),
        ));
    }
    let lines = r
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let inline = l
                .inline_product
                .map(|p| {
                    let billing_period = match p.billing_period {
                        0 => None,
                        raw => Some(
                            convert::billing_period("billing_period", raw)
                                .map_err(|e| e.within(&format!("lines[{i}].inline_product")))?,
                        ),
                    };
                    Ok::<_, AppError>(InlineInput {
                        name: p.name,
                        description: p.description,
                        unit_amount: p.unit_amount,
                        billing_period,
                        trial_days: p.trial_days,
                    })
                })
                .transpose()?;
            Ok(LineInput {
                product_id: l.product_id,
                inline,
                quantity: l.quantity,
                subscription: l.subscription,
                server_id: l.server_id,
                gift_to: l
                    .gift_to
                    .filter(|g| !(g.platform.is_empty() && g.id.is_empty()))
                    .map(|g| (g.platform, g.id)),
                custom_variables: sorted(l.custom_variables),
                metadata: if full {
                    sorted(l.metadata)
                } else {
                    StringMap::new()
                },
                price_snapshot: l.price_snapshot.filter(|_| full),
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(SessionInput {
        lines,
        currency: r.currency,
        customer_id: r.customer_id,
        buyer_email: r.buyer_email,
        billing_detail: r.billing_detail.map(|b| BillingInput {
            email: b.email,
            name: b.name,
            country: b.country,
            state: b.state,
            postal_code: b.postal_code,
            line1: b.line1,
            city: b.city,
        }),
        coupon_code: r.coupon_code,
        affiliate_code: r.affiliate_code,
        success_url: r.success_url,
        cancel_url: r.cancel_url,
        auto_redirect: r.auto_redirect,
        metadata: if full {
            sorted(r.metadata)
        } else {
            StringMap::new()
        },
        order_merchant_external_id: r.order_merchant_external_id.filter(|_| full),
        expires_in_seconds: r.expires_in_seconds.filter(|_| full),
        with_trial: r.with_trial && full,
    })
}
