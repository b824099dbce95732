//! What the store reads from a database URL: which database it names, and where a SQLite
//! file is.

use super::StoreError;
use std::path::Path;

/// The databases the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

/// Which database `url` names, by its scheme. Any other scheme is refused here: PostgreSQL's
/// driver would otherwise take it for one of its own and fail later, saying something else.
pub(super) fn kind(url: &str) -> Result<Kind, StoreError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Kind::Sqlite),
        "postgres" | "postgresql" => Ok(Kind::Postgres),
        // Only a scheme is repeated in the error: text before a ':' in a malformed URL
        // could be a user name or a password.
        _ => {
            let well_formed = scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            Err(StoreError::UnsupportedUrl {
                scheme: if well_formed { scheme } else { "" }.to_owned(),
            })
        }
    }
}

/// Whether the URL says itself how to open the file (`mode=ro`, `mode=rw`, ...).
pub(super) fn has_sqlite_mode(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("mode=")))
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
    }

    #[test]
    fn the_scheme_names_the_database_and_any_other_is_refused() {
        assert_eq!(kind("sqlite://data/a.db").unwrap(), Kind::Sqlite);
        assert_eq!(kind("sqlite::memory:").unwrap(), Kind::Sqlite);
        assert_eq!(kind("postgres://u:p@h/db").unwrap(), Kind::Postgres);
        assert_eq!(kind("postgresql://u@h/db").unwrap(), Kind::Postgres);
        for url in ["mysql://u:secret@h/db", "data/a.db", "", "u@secret:5432/db"] {
            let error = kind(url).unwrap_err().to_string();
            assert!(error.contains("DATABASE_URL"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn a_mode_is_read_from_the_query_only() {
        assert!(has_sqlite_mode("sqlite://a.db?mode=ro"));
        assert!(has_sqlite_mode("sqlite://a.db?cache=shared&mode=rw"));
        assert!(!has_sqlite_mode("sqlite://mode=a.db"));
        assert!(!has_sqlite_mode("sqlite://a.db"));
    }
}
