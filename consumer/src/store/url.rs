//! What the store reads from a database URL: whether it names a SQLite file, where that
//! file is, and how to ask SQLite to create it.

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

/// SQLite refuses to open a missing file unless asked to create it.
pub(super) fn sqlite_create_mode(url: &str) -> String {
    if is_sqlite(url) && !url.contains("mode=") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_opened_in_create_mode() {
        assert_eq!(
            sqlite_create_mode("sqlite://data/a.db"),
            "sqlite://data/a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite://data/a.db?mode=ro"),
            "sqlite://data/a.db?mode=ro"
        );
        assert_eq!(sqlite_path("sqlite://data/a.db?x=1"), "data/a.db");
    }
}
