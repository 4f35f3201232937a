//! Local adapters: the embedded default. Real parts, not mocks: a directory tree for
//! objects, a SQLite file for the ledger, a key file for the pseudonym key, an
//! in-process queue.

pub mod backup;
mod keys;
mod ledger;
mod objects;
mod queue;

pub use keys::KeyFile;
pub use ledger::SqliteLedger;
pub use objects::FsStore;
pub use queue::{MemoryQueue, Message};
