//! Statements that write many rows at once: their placeholders, and one text per power of
//! two so that every pooled connection keeps them all prepared.

use std::iter;

/// How a statement's parameters are written for the database behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    /// `$1, $2`: the only form PostgreSQL understands.
    Numbered,
    /// `?, ?`: for SQLite. sqlx binds a numbered parameter by looking up its name
    /// (`sqlite3_bind_parameter_name`, a walk along the statement's list of names), so a
    /// statement of n numbered parameters costs n²/2 steps to bind: a batch of 16 rows of 9
    /// values, a tenth of the consumer's instructions. An anonymous `?` has no name and is
    /// bound by its position.
    Positional,
}

/// Rows per statement at most: keeps every statement well under SQLite's and PostgreSQL's
/// limits on bound parameters, whatever PREFETCH is.
pub(super) const MAX_ROWS: usize = 256;

/// One statement text for each power of two up to `MAX_ROWS` rows; a chunk's rows are
/// padded up to the next size (see `padded`). Were each row count its own text, every batch
/// size would be prepared anew on each pooled connection, and past a few dozen sizes the
/// connection's statement cache (100) would evict them and prepare them again, an extra
/// round trip on PostgreSQL. The three steps' 27 sizes all stay cached. Padding, rather
/// than splitting a chunk into pieces of those sizes, keeps each step one round trip.
/// Each text is written in both forms of `Placeholders`.
pub(super) struct BySize {
    numbered: [String; SIZES],
    positional: [String; SIZES],
}

const SIZES: usize = MAX_ROWS.ilog2() as usize + 1;

impl BySize {
    pub(super) fn new(write: impl Fn(usize, Placeholders) -> String) -> Self {
        Self {
            numbered: std::array::from_fn(|power| write(1 << power, Placeholders::Numbered)),
            positional: std::array::from_fn(|power| write(1 << power, Placeholders::Positional)),
        }
    }

    /// The statement for `rows` rows, padded.
    pub(super) fn for_rows(&self, rows: usize, placeholders: Placeholders) -> &str {
        let texts = match placeholders {
            Placeholders::Numbered => &self.numbered,
            Placeholders::Positional => &self.positional,
        };
        &texts[rows.next_power_of_two().trailing_zeros() as usize]
    }
}

/// `0..rows`, then `rows - 1` again up to the next power of two: which of a step's `rows`
/// (at least one) to bind, in order, to fill its statement. Each statement makes a repeated
/// row a no-op.
pub(super) fn padded(rows: usize) -> impl Iterator<Item = usize> {
    (0..rows)
        .chain(iter::repeat(rows - 1))
        .take(rows.next_power_of_two())
}

/// `($1, $2), ($3, $4)` (or `(?, ?), (?, ?)`) for `rows` rows of `columns` values.
pub(super) fn placeholders(rows: usize, columns: usize, form: Placeholders) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| match form {
                    Placeholders::Numbered => format!("${}", row * columns + column),
                    Placeholders::Positional => "?".to_owned(),
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_across_rows() {
        use Placeholders::Numbered;
        assert_eq!(placeholders(2, 3, Numbered), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1, Numbered), "($1)");
    }

    #[test]
    fn positional_placeholders_have_no_names_to_look_up() {
        use Placeholders::Positional;
        assert_eq!(placeholders(2, 3, Positional), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(1, 1, Positional), "(?)");
    }

    #[test]
    fn each_size_is_written_in_the_form_asked_for() {
        let texts = BySize::new(|rows, form| placeholders(1, rows, form));
        assert_eq!(
            texts.for_rows(3, Placeholders::Numbered),
            "($1, $2, $3, $4)"
        );
        assert_eq!(texts.for_rows(3, Placeholders::Positional), "(?, ?, ?, ?)");
    }

    #[test]
    fn statements_are_padded_to_the_next_power_of_two_with_the_last_row() {
        assert_eq!(padded(1).collect::<Vec<_>>(), [0]);
        assert_eq!(padded(3).collect::<Vec<_>>(), [0, 1, 2, 2]);
        assert_eq!(padded(4).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(padded(MAX_ROWS).count(), MAX_ROWS);
    }
}
