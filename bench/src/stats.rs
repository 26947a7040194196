//! Latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// Latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Samples {
    pub fn add(&mut self, latency: Duration) {
        self.micros
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Nearest-rank percentiles; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = |percent: f64| {
            let index = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        let ms = |micros: u64| micros as f64 / 1000.0;
        let total: u128 = sorted.iter().map(|&micros| u128::from(micros)).sum();
        Some(Summary {
            count: sorted.len(),
            mean_ms: total as f64 / sorted.len() as f64 / 1000.0,
            p50_ms: ms(rank(50.0)),
            p90_ms: ms(rank(90.0)),
            p99_ms: ms(rank(99.0)),
            max_ms: ms(sorted[sorted.len() - 1]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples = Samples::default();
        assert_eq!(samples.summary(), None);
        for millis in 1..=100 {
            samples.add(Duration::from_millis(millis));
        }
        let summary = samples.summary().expect("samples");
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p90_ms, 90.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(summary.mean_ms, 50.5);

        let mut one = Samples::default();
        one.add(Duration::from_micros(1500));
        let summary = one.summary().expect("one sample");
        assert_eq!((summary.p50_ms, summary.p99_ms), (1.5, 1.5));
    }
}
