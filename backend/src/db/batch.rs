//! Multi-row statements: one statement writes or reads many rows, so a
//! batch of messages costs a few statements instead of a few per message.
//!
//! Rows go in chunks whose sizes are powers of two, so a table needs only a
//! handful of distinct statements, which the driver prepares once and
//! caches.

use std::ops::Range;

/// Most rows in one statement.
pub const MAX_ROWS: usize = 64;

/// Splits `count` rows into consecutive chunks of 64, 32, …, 1 rows.
pub fn chunks(count: usize) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < count {
        let left = count - start;
        let size = if left >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        chunks.push(start..start + size);
        start += size;
    }
    chunks
}

/// How a driver spells placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `?`, as plain SQLite takes them.
    Question,
    /// `$1`, `$2`, …, as PostgreSQL and the Any driver take them.
    Numbered,
}

/// `rows` parenthesised groups of `columns` placeholders, such as
/// `($1, $2), ($3, $4)`.
pub fn values(rows: usize, columns: usize, style: Placeholders) -> String {
    list(rows, columns, 0, style)
}

/// Like [`values`], numbering from `after + 1`.
pub fn list(rows: usize, columns: usize, after: usize, style: Placeholders) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match style {
                Placeholders::Question => sql.push('?'),
                Placeholders::Numbered => {
                    sql.push('$');
                    sql.push_str(&(after + row * columns + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// `$1, $2, …` for an `IN (…)` list of `count` values.
pub fn in_list(count: usize) -> String {
    (1..=count)
        .map(|number| format!("${number}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_covering_every_row_once() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![0..1]);
        assert_eq!(chunks(7), vec![0..4, 4..6, 6..7]);
        assert_eq!(chunks(130), vec![0..64, 64..128, 128..130]);
        for count in 0..300 {
            let ranges = chunks(count);
            assert_eq!(ranges.iter().map(|range| range.len()).sum::<usize>(), count);
            assert!(ranges.windows(2).all(|pair| pair[0].end == pair[1].start));
            assert!(ranges.iter().all(|range| range.len().is_power_of_two()));
        }
    }

    #[test]
    fn placeholders_are_grouped_by_row() {
        assert_eq!(values(2, 2, Placeholders::Question), "(?, ?), (?, ?)");
        assert_eq!(
            values(2, 3, Placeholders::Numbered),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(list(1, 2, 3, Placeholders::Numbered), "($4, $5)");
        assert_eq!(in_list(3), "$1, $2, $3");
    }
}
