//! What the store reads from a database URL: whether it names a SQLite file, and where that
//! file is.

use super::StoreError;
use std::path::Path;

pub(super) fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

pub(super) fn create_parent_directory(url: &str) -> Result<(), StoreError> {
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(StoreError::Directory)
        }
        _ => Ok(()),
    }
}

fn sqlite_path(url: &str) -> &str {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split('?').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_file_is_the_path_without_the_query() {
        assert_eq!(sqlite_path("sqlite://data/a.db?x=1"), "data/a.db");
        assert_eq!(sqlite_path("sqlite:a.db"), "a.db");
        assert!(is_sqlite("sqlite::memory:"));
        assert!(!is_sqlite("postgres://u@h/db"));
    }
}
