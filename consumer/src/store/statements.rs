//! Statements that write many rows at once: their numbered placeholders, and one text per
//! power of two so that every pooled connection keeps them all prepared.

use std::iter;

/// Rows per statement at most: keeps every statement well under SQLite's and PostgreSQL's
/// limits on bound parameters, whatever PREFETCH is.
pub(super) const MAX_ROWS: usize = 256;

/// One statement text for each power of two up to `MAX_ROWS` rows; a chunk's rows are
/// padded up to the next size (see `padded`). Were each row count its own text, every batch
/// size would be prepared anew on each pooled connection, and past a few dozen sizes the
/// connection's statement cache (100) would evict them and prepare them again, an extra
/// round trip on PostgreSQL. The three steps' 27 sizes all stay cached. Padding, rather
/// than splitting a chunk into pieces of those sizes, keeps each step one round trip.
pub(super) struct BySize([String; MAX_ROWS.ilog2() as usize + 1]);

impl BySize {
    pub(super) fn new(write: impl Fn(usize) -> String) -> Self {
        Self(std::array::from_fn(|power| write(1 << power)))
    }

    /// The statement for `rows` rows, padded.
    pub(super) fn for_rows(&self, rows: usize) -> &str {
        &self.0[rows.next_power_of_two().trailing_zeros() as usize]
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

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values: numbered placeholders, which
/// both SQLite and PostgreSQL understand.
pub(super) fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
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
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }

    #[test]
    fn statements_are_padded_to_the_next_power_of_two_with_the_last_row() {
        assert_eq!(padded(1).collect::<Vec<_>>(), [0]);
        assert_eq!(padded(3).collect::<Vec<_>>(), [0, 1, 2, 2]);
        assert_eq!(padded(4).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(padded(MAX_ROWS).count(), MAX_ROWS);
    }
}
