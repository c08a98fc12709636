//! Operations, each readable top to bottom: backup, restore, listing, diff, dump.

pub mod backup;
pub mod check;
pub mod content;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod stats;
pub mod walk;

pub use walk::TreeWalker;
