//! Accepting connections: each one, over TLS when given an acceptor, served by hyper with the
//! router. Time limits keep a client that connects and says nothing (or dribbles its request
//! headers) from holding a connection and its descriptor forever.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::ServeError;

/// Time for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the headers of each request (bodies may take as long as a pack takes).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
) -> Result<(), ServeError> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors and the like: the next accept may work.
            Err(e) => {
                eprintln!("serve-repo: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve_io(tcp, app, peer).await;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_io(stream, app, peer).await,
                Ok(Err(e)) => eprintln!("serve-repo: TLS handshake with {peer} failed: {e}"),
                Err(_) => eprintln!("serve-repo: TLS handshake with {peer} timed out"),
            }
        });
    }
}

async fn serve_io<I>(io: I, app: axum::Router, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let served = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        eprintln!("serve-repo: connection with {peer}: {e}");
    }
}
