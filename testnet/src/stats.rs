//! Percentiles and latency summaries for the `load` report. Percentiles use
//! the nearest-rank method (the smallest sample with at least p% of all
//! samples at or below it), so every reported figure is a latency that was
//! really observed, and p100 is the maximum.

use serde::Serialize;
use std::time::Duration;

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `sorted`, which
/// must be in ascending order; `None` when there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // rank = ceil(p/100 * n), at least 1; computed in integers of
    // basis points to avoid float rounding turning 90% of 10 into 10.
    let n = sorted.len() as u128;
    let basis_points = (p * 100.0).round() as u128;
    let rank = ((basis_points * n).div_ceil(10_000)).max(1);
    let index = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(sorted.len() - 1);
    Some(sorted[index])
}

/// Count, percentiles, mean and maximum of a set of durations, in
/// milliseconds (with fractions) for printing and JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl LatencySummary {
    pub fn from_durations(mut samples: Vec<Duration>) -> LatencySummary {
        samples.sort_unstable();
        let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
        let mean = (!samples.is_empty()).then(|| {
            let total: f64 = samples.iter().map(|&duration| millis(duration)).sum();
            total / samples.len() as f64
        });
        LatencySummary {
            count: samples.len(),
            p50_ms: percentile(&samples, 50.0).map(millis),
            p90_ms: percentile(&samples, 90.0).map(millis),
            p99_ms: percentile(&samples, 99.0).map(millis),
            max_ms: samples.last().copied().map(millis),
            mean_ms: mean,
        }
    }

    /// `p50 12.3 ms, p90 ..., p99 ..., max ...` or `no samples`.
    pub fn describe(&self) -> String {
        fn show(value: Option<f64>) -> String {
            match value {
                Some(ms) if ms >= 10_000.0 => format!("{:.1} s", ms / 1000.0),
                Some(ms) => format!("{ms:.1} ms"),
                None => "-".to_string(),
            }
        }
        if self.count == 0 {
            return "no samples".to_string();
        }
        format!(
            "p50 {}, p90 {}, p99 {}, max {} ({} samples)",
            show(self.p50_ms),
            show(self.p90_ms),
            show(self.p99_ms),
            show(self.max_ms),
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&samples, 50.0), Some(5));
        assert_eq!(percentile(&samples, 90.0), Some(9));
        assert_eq!(percentile(&samples, 99.0), Some(10));
        assert_eq!(percentile(&samples, 100.0), Some(10));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 99.9), Some(100));
    }

    #[test]
    fn summaries_sort_their_input() {
        let summary = LatencySummary::from_durations(
            [30, 10, 20, 40]
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
        );
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50_ms, Some(20.0));
        assert_eq!(summary.max_ms, Some(40.0));
        assert_eq!(summary.mean_ms, Some(25.0));
        assert!(summary.describe().starts_with("p50 20.0 ms"));
        assert_eq!(
            LatencySummary::from_durations(Vec::new()).describe(),
            "no samples"
        );
    }
}
