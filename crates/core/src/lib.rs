//! lifeboat's repository engine. No CLI and no HTTP in here: the `lifeboat` binary and the
//! daemon are thin layers over these calls.

pub mod blob;
pub mod chunker;
pub mod crypto;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod index;
pub mod lock;
pub mod ops;
pub mod pack;
pub mod patterns;
pub mod repository;
pub mod snapshot;
pub mod storage;
pub mod tree;

pub use error::{Error, Result};
pub use repository::{InitOptions, Repository};
