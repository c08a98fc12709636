//! The rest protocol over a local repository:
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | `{repository, append_only, role, can_delete}` |
//! | `POST /` | prepares an empty repository directory (what `init` needs) |
//! | `GET /KIND/` | `[{name, size}]` |
//! | `HEAD /KIND/NAME` | 200 with `Content-Length`, or 404 |
//! | `GET /KIND/NAME` (optionally `Range: bytes=A-B`) | 200 or 206 with the bytes |
//! | `PUT /KIND/NAME` | 201; 409 if the name is taken (objects are write-once) |
//! | `DELETE /KIND/NAME` | 204; 404 if absent; 403 if the user may not delete it |
//!
//! KIND is an object kind (`config`, `key`, `pack`, `index`, `snapshot`, `lock`, `condemned`,
//! `forgotten`). Every request carries HTTP basic credentials of a user in the users file.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use futures_util::StreamExt;
use lifeboat_core::storage::{ObjectKind, Storage, StorageError};
use serde_json::json;

use crate::users::Role;
use crate::ServerState;

type AppState = Arc<ServerState>;

/// An answer other than success: a status and a message for the client to show.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<StorageError> for Refusal {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound { .. } => Refusal(StatusCode::NOT_FOUND, e.to_string()),
            StorageError::AlreadyExists { .. } => Refusal(StatusCode::CONFLICT, e.to_string()),
            StorageError::InvalidName { .. } => Refusal(StatusCode::BAD_REQUEST, e.to_string()),
            StorageError::Io { .. } => {
                // The message holds the server's paths: they go to its log, not to clients.
                eprintln!("serve-repo: {e}");
                Refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage error on the server (its log has the details)".into(),
                )
            }
        }
    }
}

type Answer = Result<Response, Refusal>;

#[derive(Clone)]
struct User {
    name: String,
    role: Role,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(info).post(create))
        .route("/{kind}/", get(list))
        .route(
            "/{kind}/{name}",
            get(read).head(stat).put(write).delete(delete),
        )
        // Packs are as large as the repository's pack size; bodies stream to disk.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let user = credentials.and_then(|c| {
        let (name, password) = c.split_once(':')?;
        let role = state.users.verify(name, password.as_bytes())?;
        Some(User {
            name: name.to_string(),
            role,
        })
    });
    match user {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"lifeboat\"")],
            "wrong or missing user name and password",
        )
            .into_response(),
    }
}

/// The largest object a `PUT` may send (a pack of the largest pack size, 4 GiB, with room).
const MAX_OBJECT: u64 = (4 << 30) + (64 << 20);
/// The most one `GET` returns; packs are read by ranges far smaller than this.
const MAX_READ: u64 = 512 << 20;

fn can_delete(state: &ServerState, user: &User, kind: ObjectKind) -> bool {
    user.role == Role::Admin || !state.append_only || kind == ObjectKind::Lock
}

/// A backup removes its own lock when it ends (refusing would leave every lock to go stale),
/// but not another user's: that would let one host make every other host's backup fail.
fn owns_lock(state: &ServerState, user: &User, name: &str) -> bool {
    user.role == Role::Admin
        || !state.append_only
        || state
            .lock_owners
            .lock()
            .map(|owners| owners.get(name) == Some(&user.name))
            .unwrap_or(false)
}

fn kind_of(kind: &str) -> Result<ObjectKind, Refusal> {
    kind.parse()
        .map_err(|e: String| Refusal(StatusCode::NOT_FOUND, e))
}

/// Runs a storage call off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(Refusal::from),
        Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn info(State(state): State<AppState>, Extension(user): Extension<User>) -> Answer {
    let storage = state.clone();
    let exists = blocking(move || storage.storage.exists()).await?;
    Ok(Json(json!({
        "repository": exists,
        "append_only": state.append_only,
        "role": user.role.as_str(),
        "can_delete": can_delete(&state, &user, ObjectKind::Pack),
    }))
    .into_response())
}

async fn create(State(state): State<AppState>) -> Answer {
    blocking(move || state.storage.create()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list(State(state): State<AppState>, Path(kind): Path<String>) -> Answer {
    let kind = kind_of(&kind)?;
    let objects = blocking(move || state.storage.list(kind)).await?;
    let listed: Vec<serde_json::Value> = objects
        .into_iter()
        .map(|o| json!({"name": o.name, "size": o.size}))
        .collect();
    Ok(Json(listed).into_response())
}

async fn stat(State(state): State<AppState>, Path((kind, name)): Path<(String, String)>) -> Answer {
    let kind = kind_of(&kind)?;
    let info = blocking(move || state.storage.stat(kind, &name)).await?;
    Ok((StatusCode::OK, [(header::CONTENT_LENGTH, info.size)]).into_response())
}

/// `bytes=A-B` (one range, both ends given): its first and last byte.
fn requested_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Refusal> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let bad = || {
        Refusal(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "only ranges of the form bytes=A-B are served".into(),
        )
    };
    let spec = value.to_str().map_err(|_| bad())?;
    let (start, end) = spec
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = start.parse().map_err(|_| bad())?;
    let last: u64 = end.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(Some((first, last)))
}

async fn read(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    match requested_range(&headers)? {
        None => {
            let data = blocking(move || {
                let size = state.storage.stat(kind, &name)?.size;
                if size > MAX_READ {
                    return Ok(None);
                }
                state.storage.read(kind, &name).map(Some)
            })
            .await?
            .ok_or_else(|| {
                Refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("objects over {MAX_READ} bytes are read by ranges"),
                )
            })?;
            Ok((StatusCode::OK, data).into_response())
        }
        Some((first, last)) => {
            let (data, size) = blocking(move || {
                let size = state.storage.stat(kind, &name)?.size;
                // As HTTP has it: a range that ends past the object is cut at its end; one
                // that starts past it is the client's mistake (or a truncated object), not
                // a server failure to retry.
                if first >= size {
                    return Ok((None, size));
                }
                let length = last.min(size - 1) - first + 1;
                if length > MAX_READ {
                    return Ok((None, size));
                }
                let data = state.storage.read_range(kind, &name, first, length)?;
                Ok((Some(data), size))
            })
            .await?;
            let Some(data) = data else {
                return Err(Refusal(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!(
                        "the range starts past the end of the object ({size} bytes) or is over \
                         {MAX_READ} bytes"
                    ),
                ));
            };
            let range = format!("bytes {first}-{}/{size}", first + data.len() as u64 - 1);
            Ok((
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, range)],
                data,
            )
                .into_response())
        }
    }
}

async fn write(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((kind, name)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let kind = kind_of(&kind)?;
    lifeboat_core::storage::validate_name(kind, &name)?;
    let stager = state.clone();
    let mut staged = blocking(move || stager.storage.stage(kind)).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // A client that goes away mid-upload leaves nothing under the name.
        let chunk = chunk.map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))?;
        if staged.len() + chunk.len() as u64 > MAX_OBJECT {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("objects are at most {MAX_OBJECT} bytes"),
            ));
        }
        tokio::task::block_in_place(|| staged.write_all(&chunk)).map_err(|source| {
            Refusal::from(StorageError::Io {
                location: format!("staging {kind} {name}"),
                source,
                retryable: true,
            })
        })?;
    }
    let (writer, stored) = (state.clone(), name.clone());
    blocking(move || writer.storage.write_staged(kind, &stored, staged)).await?;
    if kind == ObjectKind::Lock {
        if let Ok(mut owners) = state.lock_owners.lock() {
            owners.insert(name, user.name);
        }
    }
    Ok(StatusCode::CREATED.into_response())
}

async fn delete(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((kind, name)): Path<(String, String)>,
) -> Answer {
    let kind = kind_of(&kind)?;
    if kind == ObjectKind::Lock && !owns_lock(&state, &user, &name) {
        eprintln!(
            "serve-repo: refused: user {} ({}) deleting another user's lock {name}",
            user.name, user.role
        );
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!(
                "this server is append-only: user {} may delete only the locks it wrote; \
                 stale locks of others are ignored, and an admin user removes them",
                user.name
            ),
        ));
    }
    if !can_delete(&state, &user, kind) {
        eprintln!(
            "serve-repo: refused: user {} ({}) deleting {kind} {name}",
            user.name, user.role
        );
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!(
                "this server is append-only: user {} (role {}) may add objects but not \
                 delete them; forget and prune need an admin user or a run on the server",
                user.name, user.role
            ),
        ));
    }
    let (deleter, gone) = (state.clone(), name.clone());
    blocking(move || deleter.storage.delete(kind, &gone)).await?;
    if kind == ObjectKind::Lock {
        if let Ok(mut owners) = state.lock_owners.lock() {
            owners.remove(&name);
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
