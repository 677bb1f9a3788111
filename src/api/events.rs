//! EventService: each method turns its request into the domain's input (see `requests`),
//! calls the use case and converts the answer (`convert`).

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::SharedCtx;
use crate::{
    domain::events::{ListEvents, WatchEvents},
    pb::v1::{self as pb, event_service_server::EventService},
};

/// The EventService implementation.
#[derive(Debug, Clone)]
pub struct EventApi {
    ctx: SharedCtx,
}

impl EventApi {
    /// A service over `ctx`.
    pub fn new(ctx: SharedCtx) -> Self {
        EventApi { ctx }
    }
}

/// The messages of a WatchEvents answer.
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    #[tracing::instrument(skip_all)]
    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = ListEvents::try_from(req.into_inner())?;
        let page = self.ctx.events.list(&p, input).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.events.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
            latest_revision: page.latest_revision,
        }))
    }

    type WatchEventsStream = EventStream;

    #[tracing::instrument(skip_all)]
    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = WatchEvents::try_from(req.into_inner())?;
        let watch = self.ctx.events.watch(&p, input).await?;
        let stream = watch.map(|batch| {
            batch
                .map(|events| pb::WatchEventsResponse {
                    events: events.into_iter().map(Into::into).collect(),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
