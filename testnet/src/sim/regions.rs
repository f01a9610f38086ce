//! Per-region latency (`--latency regions` or `--latency regions:FILE`):
//! the nodes are spread over regions by share, and a connection's one-way
//! latency is drawn uniformly from the range its two regions' matrix entry
//! gives. The built-in matrix is a rough world map (six regions, shares
//! near where public ledger nodes are, ranges near half the round trips
//! between continents); a JSON file can give any other.

use serde::Deserialize;
use std::time::Duration;

/// Regions, their shares of the nodes, and the one-way latency range
/// between every pair (symmetric; the diagonal is within a region).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionMatrix {
    pub names: Vec<String>,
    /// Fractions of the nodes, summing to 1.
    pub shares: Vec<f64>,
    /// `ranges[a][b]`: (low, high) one-way latency between regions a and b.
    pub ranges: Vec<Vec<(Duration, Duration)>>,
}

/// The file form: `{"regions": [{"name": "eu", "share": 0.45}, ...],
/// "one_way_ms": [[[5, 25], [40, 60], ...], ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    regions: Vec<RegionEntry>,
    one_way_ms: Vec<Vec<[f64; 2]>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionEntry {
    name: String,
    share: f64,
}

/// The built-in map: (name, share), and one-way ranges in milliseconds,
/// one row per region in the order of `WORLD_REGIONS`.
const WORLD_REGIONS: [(&str, f64); 6] = [
    ("north-america", 0.34),
    ("europe", 0.46),
    ("asia", 0.12),
    ("oceania", 0.03),
    ("south-america", 0.03),
    ("africa", 0.02),
];

const WORLD_ONE_WAY_MS: [[(u64, u64); 6]; 6] = [
    // north-america
    [(8, 40), (38, 65), (70, 115), (75, 105), (55, 95), (95, 140)],
    // europe
    [
        (38, 65),
        (5, 25),
        (80, 135),
        (120, 155),
        (90, 125),
        (45, 95),
    ],
    // asia
    [
        (70, 115),
        (80, 135),
        (15, 60),
        (50, 95),
        (150, 185),
        (115, 165),
    ],
    // oceania
    [
        (75, 105),
        (120, 155),
        (50, 95),
        (5, 25),
        (150, 185),
        (170, 220),
    ],
    // south-america
    [
        (55, 95),
        (90, 125),
        (150, 185),
        (150, 185),
        (10, 45),
        (145, 185),
    ],
    // africa
    [
        (95, 140),
        (45, 95),
        (115, 165),
        (170, 220),
        (145, 185),
        (10, 50),
    ],
];

impl RegionMatrix {
    /// The built-in six-region map.
    pub fn world() -> RegionMatrix {
        RegionMatrix {
            names: WORLD_REGIONS
                .iter()
                .map(|(name, _)| name.to_string())
                .collect(),
            shares: WORLD_REGIONS.iter().map(|(_, share)| *share).collect(),
            ranges: WORLD_ONE_WAY_MS
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|(low, high)| {
                            (Duration::from_millis(*low), Duration::from_millis(*high))
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// Reads the JSON form (see `RegionFile`) and checks it.
    pub fn from_json(text: &str) -> Result<RegionMatrix, String> {
        let file: RegionFile =
            serde_json::from_str(text).map_err(|error| format!("region matrix: {error}"))?;
        let to_duration = |ms: f64| -> Result<Duration, String> {
            if ms.is_finite() && (0.0..=60_000.0).contains(&ms) {
                Ok(Duration::from_secs_f64(ms / 1000.0))
            } else {
                Err(format!(
                    "region matrix: latency {ms} ms is outside 0..60000 ms"
                ))
            }
        };
        let mut ranges = Vec::with_capacity(file.one_way_ms.len());
        for row in &file.one_way_ms {
            let mut out = Vec::with_capacity(row.len());
            for [low, high] in row {
                out.push((to_duration(*low)?, to_duration(*high)?));
            }
            ranges.push(out);
        }
        let total: f64 = file.regions.iter().map(|region| region.share).sum();
        let matrix = RegionMatrix {
            names: file
                .regions
                .iter()
                .map(|region| region.name.clone())
                .collect(),
            shares: file
                .regions
                .iter()
                .map(|region| region.share / total)
                .collect(),
            ranges,
        };
        if file
            .regions
            .iter()
            .any(|region| !region.share.is_finite() || region.share <= 0.0)
        {
            return Err("region matrix: every share must be above 0".into());
        }
        matrix.check()?;
        Ok(matrix)
    }

    /// The matrix is square, symmetric, one row per region, low <= high.
    fn check(&self) -> Result<(), String> {
        let n = self.names.len();
        if n == 0 {
            return Err("region matrix: no regions".into());
        }
        if self.ranges.len() != n || self.ranges.iter().any(|row| row.len() != n) {
            return Err(format!(
                "region matrix: one_way_ms must be {n} rows of {n} [low, high] pairs"
            ));
        }
        for a in 0..n {
            for b in 0..n {
                let (low, high) = self.ranges[a][b];
                if low > high {
                    return Err(format!(
                        "region matrix: {} to {}: the low bound is above the high one",
                        self.names[a], self.names[b]
                    ));
                }
                if self.ranges[a][b] != self.ranges[b][a] {
                    return Err(format!(
                        "region matrix: {} to {} differs from {} to {}",
                        self.names[a], self.names[b], self.names[b], self.names[a]
                    ));
                }
            }
        }
        Ok(())
    }

    /// The region of each of `nodes` nodes: consecutive blocks of node
    /// indexes in region order, sized by share (so `clusters` topologies
    /// and partitions, which also cut by index, follow geography).
    pub fn assign(&self, nodes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(nodes);
        let mut cumulative = 0.0;
        for (region, share) in self.shares.iter().enumerate() {
            cumulative += share;
            let end = if region + 1 == self.shares.len() {
                nodes
            } else {
                ((nodes as f64 * cumulative).round() as usize).min(nodes)
            };
            while out.len() < end {
                out.push(region as u8);
            }
        }
        out
    }

    /// The largest latency of any pair.
    pub fn max(&self) -> Duration {
        self.ranges
            .iter()
            .flatten()
            .map(|(_, high)| *high)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_map_is_symmetric_and_assigns_every_node() {
        let world = RegionMatrix::world();
        assert_eq!(world.check(), Ok(()));
        assert!((world.shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let regions = world.assign(1000);
        assert_eq!(regions.len(), 1000);
        assert_eq!(regions.iter().filter(|region| **region == 1).count(), 460);
        assert_eq!(regions[999], 5);
        assert_eq!(world.max(), Duration::from_millis(220));
    }

    #[test]
    fn a_file_matrix_is_checked() {
        let good = r#"{"regions": [{"name": "a", "share": 1}, {"name": "b", "share": 3}],
                       "one_way_ms": [[[1, 2], [10, 20]], [[10, 20], [1, 2]]]}"#;
        let matrix = RegionMatrix::from_json(good).unwrap();
        assert_eq!(matrix.shares, vec![0.25, 0.75]);
        assert_eq!(matrix.assign(8), vec![0, 0, 1, 1, 1, 1, 1, 1]);
        let asymmetric = good.replace("[[10, 20], [1, 2]]", "[[10, 30], [1, 2]]");
        assert!(RegionMatrix::from_json(&asymmetric)
            .unwrap_err()
            .contains("differs"));
        let short = r#"{"regions": [{"name": "a", "share": 1}], "one_way_ms": []}"#;
        assert!(RegionMatrix::from_json(short)
            .unwrap_err()
            .contains("1 rows of 1"));
        let zero = good.replace("\"share\": 1}", "\"share\": 0}");
        assert!(RegionMatrix::from_json(&zero)
            .unwrap_err()
            .contains("share"));
    }
}
