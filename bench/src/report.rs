//! The report of a run, for people and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::conservation::Conservation;
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub gateway: String,
    /// `fixed rate` or `full speed`.
    pub mode: String,
    pub target_rate: Option<f64>,
    pub connections: u32,
    /// Orders each connection kept in flight at full speed.
    pub in_flight: Option<u32>,
    pub duration_s: f64,
    pub placed: u64,
    pub reserved: u64,
    /// Orders RESERVED per second over the measured window.
    pub reserved_per_s: f64,
    pub cancelled: BTreeMap<String, u64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub skipped: u64,
    pub to_reserved: Option<Summary>,
    pub paid: u64,
    pub to_paid: Option<Summary>,
    pub conservation: Conservation,
}

fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Percentiles of `summary` on one line, counting its samples as `what`
/// (`orders`, `returns`).
pub fn latency(summary: Option<&Summary>, what: &str) -> String {
    match summary {
        Some(s) => format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (mean {:.2} ms, {} {what})",
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.max_ms,
            s.mean_ms,
            thousands(s.count as u64)
        ),
        None => "no samples".into(),
    }
}

impl Report {
    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let how = match (self.target_rate, self.in_flight) {
            (Some(rate), _) => format!("at {rate} orders/s"),
            (None, Some(in_flight)) => format!("at full speed, {in_flight} in flight each"),
            (None, None) => "at full speed".into(),
        };
        let _ = writeln!(
            out,
            "shop-bench: {:.1} s against {}, {} connections {how}",
            self.duration_s, self.gateway, self.connections
        );
        let _ = writeln!(
            out,
            "orders        {} placed, {} RESERVED: {:.1} orders/s",
            thousands(self.placed),
            thousands(self.reserved),
            self.reserved_per_s
        );
        if !self.cancelled.is_empty() {
            let reasons: Vec<String> = self
                .cancelled
                .iter()
                .map(|(reason, count)| format!("{} {reason}", thousands(*count)))
                .collect();
            let _ = writeln!(out, "cancelled     {}", reasons.join(", "));
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "skipped       {} orders were due while too many were in flight: the shop fell behind",
                thousands(self.skipped)
            );
        }
        let _ = writeln!(
            out,
            "to RESERVED   {}",
            latency(self.to_reserved.as_ref(), "orders")
        );
        if self.paid > 0 || self.to_paid.is_some() {
            let _ = writeln!(
                out,
                "pay → PAID    {}",
                latency(self.to_paid.as_ref(), "orders")
            );
        }
        let _ = writeln!(out, "errors        {}", thousands(self.errors));
        for sample in &self.error_samples {
            let _ = writeln!(out, "              {sample}");
        }
        let conservation = &self.conservation;
        if conservation.ok && conservation.orders_uncounted {
            let _ = writeln!(
                out,
                "conservation  {}: a customer of the run placed more orders than the shop lists \
                 ({}), so the run's own units could not be counted",
                if conservation.checked == "ledger" {
                    "the ledger adds up (available + reserved + sold + written off = received)"
                } else {
                    "not checked (--operator-token checks the ledger)"
                },
                thousands(crate::conservation::LISTED_AT_MOST as u64)
            );
        } else if conservation.ok && conservation.checked == "ledger" {
            let _ = writeln!(
                out,
                "conservation  ok: {} skus; available + reserved + sold + written off = received, \
                 sold during the run = the run's paid units ({} units held by the run)",
                thousands(conservation.skus as u64),
                thousands(conservation.units_held.max(0) as u64)
            );
        } else if conservation.ok {
            let _ = writeln!(
                out,
                "conservation  ok: {} skus; available + held now >= available before ({} units held, \
                 {} returned by orders from before the run; --operator-token checks the ledger)",
                thousands(conservation.skus as u64),
                thousands(conservation.units_held.max(0) as u64),
                thousands(conservation.units_returned.max(0) as u64)
            );
        } else {
            let _ = writeln!(
                out,
                "conservation  VIOLATED: {} skus do not add up, {} orders never settled",
                conservation.violations.len(),
                conservation.unsettled
            );
            for violation in conservation.violations.iter().take(10) {
                let _ = writeln!(
                    out,
                    "              {}: {}",
                    violation.sku, violation.problem
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(31_245_001), "31,245,001");
    }
}
