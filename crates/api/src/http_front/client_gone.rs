//! Requests whose client went away stop: a connection notices when its client closes it (the
//! dispatcher keeps reading while a request runs, so the end of the stream shows up at once), and
//! the request's work is dropped then, releasing what it held — state-database connections,
//! idempotency claims, statements on customer systems (which are asked to cancel).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
};

use crate::error::ApiError;

/// A connection that notices when its client closes it.
pub struct Watched<T> {
    io: T,
    closed: watch::Sender<bool>,
}

impl<T> Watched<T> {
    pub fn new(io: T) -> Self {
        Self { io, closed: watch::Sender::new(false) }
    }

    /// Connection data for the requests on this connection.
    pub fn client_gone(&self) -> ClientGone {
        ClientGone(self.closed.subscribe())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let read = ready!(Pin::new(&mut this.io).poll_read(cx, buf));
        if read.is_err() || (room && buf.filled().len() == before) {
            this.closed.send_replace(true);
        }
        Poll::Ready(read)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Resolves once the client closed the connection a request came on.
#[derive(Clone)]
pub struct ClientGone(watch::Receiver<bool>);

impl ClientGone {
    async fn wait(mut self) {
        // The sender lives as long as the connection; without it nobody waits for an answer.
        let _ = self.0.wait_for(|closed| *closed).await;
    }
}

/// "Client Closed Request": logged for a request whose client left; nobody receives it.
const CLIENT_CLOSED: u16 = 499;

/// Middleware: drops a request's work as soon as its client has gone.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(gone) = req.conn_data::<ClientGone>().cloned() else { return next.call(req).await };
    tokio::select! {
        response = next.call(req) => response,
        () = gone.wait() => {
            let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
            Err(ApiError::new(status, "the client closed the connection").into())
        }
    }
}
