//! Local adapters: the embedded default. Real parts, not mocks: a directory tree for
//! objects, a SQLite file for the ledger, a key file for the pseudonym key.

mod keys;
mod ledger;
mod objects;

pub use keys::KeyFile;
pub use ledger::SqliteLedger;
pub use objects::FsStore;
