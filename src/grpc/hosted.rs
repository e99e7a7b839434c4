//! HostedCheckoutService: the hosted payment page / payment processor ends sessions.
use super::{
    auth::platform,
    session_pb::{effective_status, session_id, session_not_found, Audience, SessionView},
};
use crate::{
    db::{
        lifecycle::{self, Until},
        sessions, Db,
    },
    domain::{
        ids::SessionId,
        invalid::required_text,
        session_state::{already_ended, Status},
        time::Timestamp,
    },
    error::{AppError, AppResult},
    events::Hub,
    pb::{self, hosted_checkout_service_server::HostedCheckoutService},
};
use std::sync::Arc;
use tonic::{Request, Response, Status as GrpcStatus};

pub struct Hosted {
    pub db: Db,
    pub view: Arc<SessionView>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Hosted {
    async fn current(&self, id: &SessionId) -> AppResult<sessions::StoredSession> {
        sessions::get_any(&self.db, id)
            .await?
            .ok_or_else(session_not_found)
    }

    fn reply(&self, stored: sessions::StoredSession) -> Result<Response<pb::Session>, GrpcStatus> {
        Ok(Response::new(self.view.session(
            stored,
            Audience::Full,
            Timestamp::now(),
        )?))
    }
}

/// Why a payment or cancel did not take: the session's ending. A session still open was
/// within the expiry margin (session_state::ENDING_MARGIN_MICROS): it is expiring.
fn ended_status(stored: &sessions::StoredSession) -> AppResult<Status> {
    Ok(
        match effective_status(
            &stored.session.status,
            stored.session.expires_at,
            Timestamp::now(),
        )? {
            Status::Open => Status::Expired,
            ended => ended,
        },
    )
}

#[tonic::async_trait]
impl HostedCheckoutService for Hosted {
    /// Exactly one order per session: the first payment wins; a retry with the same
    /// payment_reference gets the same result; anything else after the end is refused.
    async fn complete_session(
        &self,
        req: Request<pb::CompleteSessionRequest>,
    ) -> Result<Response<pb::Session>, GrpcStatus> {
        platform(&req)?;
        let r = req.into_inner();
        let id = session_id(&r.session_id)?;
        let reference = required_text("payment_reference", &r.payment_reference, 255)?;
        if let Some(s) = lifecycle::complete(&self.db, &id, &reference).await? {
            self.hub.notify(id.as_str());
            self.hub.feed.published(&s.store_id, &s.environment);
            self.metrics.session_ended("completed");
            return self.reply(self.current(&id).await?);
        }
        let stored = self.current(&id).await?;
        let status = ended_status(&stored)?;
        if status == Status::Completed {
            if lifecycle::payment_reference(&self.db, &id)
                .await?
                .as_deref()
                == Some(reference.as_str())
            {
                return self.reply(stored);
            }
            let message = "Session is already completed with a different payment_reference";
            return Err(AppError::failed_precondition(message).into());
        }
        Err(AppError::failed_precondition(already_ended(status)).into())
    }

    /// The buyer left through cancel_url. Cancelling twice is fine; cancelling a session
    /// that completed or expired is not.
    async fn cancel_session(
        &self,
        req: Request<pb::CancelSessionRequest>,
    ) -> Result<Response<pb::Session>, GrpcStatus> {
        platform(&req)?;
        let id = session_id(&req.get_ref().session_id)?;
        if lifecycle::end(&self.db, &id, Status::Cancelled, Until::MarginBeforeExpiry).await? {
            self.hub.notify(id.as_str());
            self.metrics.session_ended("cancelled");
            let stored = self.current(&id).await?;
            let s = &stored.session;
            self.hub.feed.published(&s.store_id, &s.environment);
            return self.reply(stored);
        }
        let stored = self.current(&id).await?;
        match ended_status(&stored)? {
            Status::Cancelled => self.reply(stored),
            status => Err(AppError::failed_precondition(already_ended(status)).into()),
        }
    }
}
