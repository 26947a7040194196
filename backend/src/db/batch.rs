//! Multi-row statements: one statement writes or reads many rows, so a
//! batch of messages costs a few statements instead of a few per message.
//!
//! Rows go in chunks whose sizes are powers of two, so a table needs only a
//! handful of distinct statements, which the driver prepares once and
//! caches.

use std::ops::Range;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::Dialect;

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
    /// `?`, bound in the order they appear: SQLite finds an unnamed
    /// parameter at once, where it looks a `$n` name up in a list, which
    /// costs time in proportion to the square of a statement's parameters.
    Question,
    /// `$1`, `$2`, …, as PostgreSQL takes them.
    Numbered,
}

impl From<Dialect> for Placeholders {
    fn from(dialect: Dialect) -> Placeholders {
        match dialect {
            Dialect::Sqlite => Placeholders::Question,
            Dialect::Postgres => Placeholders::Numbered,
        }
    }
}

impl Placeholders {
    /// The placeholders of the database behind `connection`.
    pub fn of(connection: &AnyConnection) -> Placeholders {
        Dialect::of(connection).into()
    }

    /// The `index`th placeholder of a statement, counting from 0, for
    /// statements that number every placeholder in order of appearance.
    pub fn nth(self, index: usize) -> String {
        let mut sql = String::new();
        self.push(&mut sql, index);
        sql
    }

    fn push(self, sql: &mut String, index: usize) {
        match self {
            Placeholders::Question => sql.push('?'),
            Placeholders::Numbered => {
                sql.push('$');
                sql.push_str(&(index + 1).to_string());
            }
        }
    }
}

/// `rows` parenthesised groups of `columns` placeholders, such as
/// `($1, $2), ($3, $4)`: the only parameters of their statement.
pub fn values(rows: usize, columns: usize, style: Placeholders) -> String {
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
            style.push(&mut sql, row * columns + column);
        }
        sql.push(')');
    }
    sql
}

/// `$1, $2, …` (or `?, ?, …`) for an `IN (…)` list of `count` values, the
/// only parameters of their statement.
pub fn in_list(count: usize, style: Placeholders) -> String {
    let mut sql = String::with_capacity(count * 5);
    for index in 0..count {
        if index > 0 {
            sql.push_str(", ");
        }
        style.push(&mut sql, index);
    }
    sql
}

/// The rows of a statement whose only parameters are an `IN (…)` list of
/// `keys`. `sql` gets the list's placeholders and returns the statement.
/// The keys are sorted and deduplicated first, so statements that lock
/// rows (`FOR UPDATE`, ordered by the key) always lock them in the same
/// order and concurrent transactions cannot deadlock; they go in chunks of
/// at most [`MAX_ROWS`].
///
/// # Errors
///
/// Any error of the statements.
pub async fn fetch_in(
    connection: &mut AnyConnection,
    keys: impl IntoIterator<Item = String>,
    sql: impl Fn(&str) -> String,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut keys: Vec<String> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let style = Placeholders::of(connection);
    let mut rows = Vec::with_capacity(keys.len());
    for range in chunks(keys.len()) {
        let statement = sql(&in_list(range.len(), style));
        let mut select = sqlx::query(sqlx::AssertSqlSafe(statement));
        for key in &keys[range] {
            select = select.bind(key.as_str());
        }
        rows.extend(select.fetch_all(&mut *connection).await?);
    }
    Ok(rows)
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
        assert_eq!(in_list(3, Placeholders::Numbered), "$1, $2, $3");
        assert_eq!(in_list(3, Placeholders::Question), "?, ?, ?");
    }
}
