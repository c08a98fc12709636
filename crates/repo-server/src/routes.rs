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

fn can_delete(state: &ServerState, user: &User, kind: ObjectKind) -> bool {
    // A backup removes its own lock when it ends; refusing that would leave every lock to go
    // stale. Locks hold no data, so deleting one destroys nothing.
    user.role == Role::Admin || !state.append_only || kind == ObjectKind::Lock
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

/// `bytes=A-B` (one range, both ends given): offset and length.
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
    let start: u64 = start.parse().map_err(|_| bad())?;
    let end: u64 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end - start + 1)))
}

async fn read(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    match requested_range(&headers)? {
        None => {
            let data = blocking(move || state.storage.read(kind, &name)).await?;
            Ok((StatusCode::OK, data).into_response())
        }
        Some((offset, length)) => {
            let data =
                blocking(move || state.storage.read_range(kind, &name, offset, length)).await?;
            Ok((StatusCode::PARTIAL_CONTENT, data).into_response())
        }
    }
}

async fn write(
    State(state): State<AppState>,
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
        tokio::task::block_in_place(|| staged.write_all(&chunk)).map_err(|source| {
            Refusal::from(StorageError::Io {
                location: format!("staging {kind} {name}"),
                source,
                retryable: true,
            })
        })?;
    }
    blocking(move || state.storage.write_staged(kind, &name, staged)).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn delete(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((kind, name)): Path<(String, String)>,
) -> Answer {
    let kind = kind_of(&kind)?;
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
    blocking(move || state.storage.delete(kind, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
