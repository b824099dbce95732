//! Passwords out of logs: the one way this project shows credentials, whether they came in
//! an `amqp://` address or a database URL. A shown address names the user, so an operator
//! can tell which account is meant, and never the password.

/// What stands where a password was.
const MASK: &str = "***";

/// `user:***` when there is a password, `user` alone when there is none.
pub fn credentials(user: &str, password: &str) -> String {
    if password.is_empty() {
        user.to_owned()
    } else {
        format!("{user}:{MASK}")
    }
}

/// `scheme://user:***@host/db` for a URL with a password; any other URL unchanged.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            format!("{scheme}://{}@{host}", credentials(user, password))
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_users_kept() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/coc"),
            "postgres://app:***@db:5432/coc"
        );
        assert_eq!(
            url("postgres://app@db:5432/coc"),
            "postgres://app@db:5432/coc"
        );
        assert_eq!(url("sqlite://data/coc.db"), "sqlite://data/coc.db");
        assert_eq!(credentials("guest", ""), "guest");
    }
}
