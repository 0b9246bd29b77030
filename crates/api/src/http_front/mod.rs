//! The HTTP front: serves the app over HTTP/1.1 the way actix-web's `HttpServer` does, on
//! connections whose protocol errors answer the JSON error object ([`protocol_errors`]), and with
//! an idle timeout on request bodies ([`body_timeout`]).

pub mod body_timeout;
pub mod client_gone;
mod protocol_errors;

use std::{fmt, future::ready, net::TcpListener, time::Duration};

use actix_http::{HttpService, Request, Response, body::MessageBody, error::DispatchError};
use actix_server::Server;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use tokio::net::TcpStream;

use self::{client_gone::Watched, protocol_errors::JsonProtocolErrors};

/// How long a client may take to send a request head (actix-web's default); then 408.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection may take to shut down (actix-web's default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long in-flight requests may take to finish once the server is stopped.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// Serves the apps `app` makes (one per worker) on `listener`; OS signals are left to the caller.
pub fn serve<F, I, S, B>(listener: TcpListener, app: F) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    S::Service: 'static,
    <S::Service as Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder.listen("syncline-api", listener, move || {
        let app = app().into_factory().map_err(|e| e.into().error_response());
        // actix-web keeps `AppConfig::new` to itself; this is the constructor actix-test uses.
        let app = map_config(app, move |()| AppConfig::__priv_test_new(false, addr.to_string(), addr));
        let shutdown = shutdown.clone();
        let http = HttpService::build()
            .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .local_addr(addr)
            // Requests learn when their client closes the connection (see `client_gone`).
            .on_connect_ext(|io: &Watched<JsonProtocolErrors<TcpStream>>, data| {
                data.insert(io.client_gone());
            })
            // Idle keep-alive connections close at once on a graceful stop.
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .h1(app);
        fn_service(|io: TcpStream| {
            let peer = io.peer_addr().ok();
            ready(Ok::<_, DispatchError>((Watched::new(JsonProtocolErrors::new(io)), peer)))
        })
        .and_then(http)
    })?;
    Ok(server.shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS).disable_signals().run())
}
