//! An idle timeout on request bodies: a client that stops sending its body (fewer bytes than its
//! `Content-Length`, then silence) gets 408 instead of holding the request open forever.

use std::{
    cell::Cell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::{ConnectionType, StatusCode},
    middleware::Next,
    web::Bytes,
};
use futures::Stream;
use tokio::time::{Instant, Sleep, sleep};

use crate::error::ApiError;

/// How long reading a request body may wait for its next bytes.
const IDLE: Duration = Duration::from_secs(10);

/// Middleware: reading the request body fails once no bytes arrive for [`IDLE`] while the app
/// waits for them, and the request is then answered 408 whatever the handler made of the failure.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let stalled = Rc::new(Cell::new(false));
    let body = IdleTimeout { payload, timer: Box::pin(sleep(IDLE)), armed: false, stalled: stalled.clone() };
    req.set_payload(Payload::Stream { payload: Box::pin(body) });
    let res = next.call(req).await;
    if !stalled.get() {
        return res.map(ServiceResponse::map_into_left_body);
    }
    let error = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request body stopped arriving (no bytes for {} s)", IDLE.as_secs()),
    );
    match res {
        Ok(res) => {
            let mut response = error.error_response();
            response.head_mut().set_connection_type(ConnectionType::Close);
            Ok(ServiceResponse::new(res.into_parts().0, response).map_into_right_body())
        }
        Err(_) => Err(error.into()),
    }
}

/// A request body that fails with a timeout once it has been waited on for [`IDLE`].
struct IdleTimeout {
    payload: Payload,
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs for the current wait.
    armed: bool,
    stalled: Rc<Cell<bool>>,
}

impl Stream for IdleTimeout {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(item) = Pin::new(&mut this.payload).poll_next(cx) {
            this.armed = false;
            return Poll::Ready(item);
        }
        if !this.armed {
            this.timer.as_mut().reset(Instant::now() + IDLE);
            this.armed = true;
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.stalled.set(true);
        Poll::Ready(Some(Err(PayloadError::Io(io::ErrorKind::TimedOut.into()))))
    }
}
