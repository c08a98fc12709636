//! `lifeboat serve-repo`: a repository directory served over HTTP(S) to clients that use the
//! `rest:` backend, with users of two roles. On an append-only server, backup users can read
//! and add objects but delete nothing except their own locks, and nothing is ever
//! overwritten (objects are write-once for everyone), so a compromised client host cannot
//! destroy the backups it made. The protocol is in docs/storage.md ("The rest protocol").

mod connections;
mod routes;
mod tls;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lifeboat_core::storage::LocalStorage;

pub use users::{add_user, Role, Users, UsersError};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The repository directory (it may not exist yet: `init` through the server creates it).
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub users: PathBuf,
    /// Backup users may not delete (locks aside); admins still may.
    pub append_only: bool,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server: {0}")]
    Runtime(std::io::Error),
}

pub(crate) struct ServerState {
    pub storage: LocalStorage,
    pub users: Users,
    pub append_only: bool,
    /// Who wrote each lock since the server started: on an append-only server a backup user
    /// deletes only its own (a lock written before a restart stays until it is stale).
    pub lock_owners: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// Serves until the process is stopped. `ready` gets the address actually bound (useful
/// with port 0) once connections are accepted.
pub fn serve(options: ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let users = Users::load(&options.users)?;
    let tls = options
        .tls
        .as_ref()
        .map(|(cert, key)| tls::acceptor(cert, key))
        .transpose()?;
    let state = Arc::new(ServerState {
        storage: LocalStorage::new(&options.dir),
        users,
        append_only: options.append_only,
        lock_owners: Default::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lifeboat-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: options.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(ServeError::Runtime)?;
        let app = routes::router(state);
        ready(bound);
        connections::serve(listener, tls, app).await
    })
}
