//! How a topic exchange matches a routing key against a binding pattern, as RabbitMQ does,
//! so that a service can tell without asking the broker whether a queue is bound for a key.

/// Words separated by `.`; in `pattern`, `*` matches exactly one word and `#` zero or more.
pub fn matches(pattern: &str, routing_key: &str) -> bool {
    fn words_match(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                words_match(rest, key)
                    || key
                        .split_first()
                        .is_some_and(|(_, tail)| words_match(pattern, tail))
            }
            (Some((&"*", rest)), Some((_, tail))) => words_match(rest, tail),
            (Some((word, rest)), Some((first, tail))) => word == first && words_match(rest, tail),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    words_match(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        let cases = [
            ("address.changed.#", "address.changed.pr", true),
            ("address.changed.#", "address.changed", true),
            ("address.changed.pr", "address.changed.pr", true),
            ("address.changed.pr", "address.changed.la", false),
            ("address.*.pr", "address.changed.pr", true),
            ("address.*", "address.changed.pr", false),
            ("#", "anything.at.all", true),
            ("#.pr", "address.changed.pr", true),
            ("*.changed.#", "address.changed.pr.extra", true),
            ("address.changed.pr", "address.changed.pr.extra", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
