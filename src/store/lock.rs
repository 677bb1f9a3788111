//! The claim of one server process on an SQLite database file. SQLite is embedded: a second
//! process on the same file would answer from its own replica view, which nothing tells of
//! the first one's changes, so it must not start (several replicas need PostgreSQL).

use std::{
    fs::{File, TryLockError},
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
};

use sea_orm::{DbErr, sqlx::sqlite::SqliteConnectOptions};

/// An exclusive advisory lock (`flock`) on `<database file>.lock`, held while any clone of it
/// lives or until [`FileClaim::release`]. A file beside the database, never the database
/// itself: closing any handle of a file drops every POSIX lock the process holds on it,
/// SQLite's own included.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileClaim(Arc<Mutex<Option<File>>>);

impl FileClaim {
    /// Claims the database file of the SQLite `url`; no claim for an in-memory database.
    pub(crate) fn take(url: &str) -> Result<FileClaim, DbErr> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Custom(format!("invalid SQLite URL: {e}")))?;
        let path = opts.get_filename();
        if !path.is_file() {
            return Ok(FileClaim::default());
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = std::path::PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| DbErr::Custom(format!("cannot open {}: {e}", lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(FileClaim(Arc::new(Mutex::new(Some(file))))),
            Err(TryLockError::WouldBlock) => Err(DbErr::Custom(in_use(path))),
            Err(TryLockError::Error(e)) => Err(DbErr::Custom(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// Gives the file up, for a restart in the same process.
    pub(crate) fn release(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.take();
        }
    }
}

fn in_use(path: &Path) -> String {
    format!(
        "the SQLite database {} is in use by another workspaced process; SQLite serves one \
         process only (use PostgreSQL for several replicas)",
        path.display()
    )
}
