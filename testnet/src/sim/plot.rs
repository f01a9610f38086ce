//! `--plot FILE.svg`: two charts written by hand as SVG (small enough that
//! a plotting crate would not save code): the block propagation CDF (the
//! fraction of nodes holding a block against the time since it was
//! mined, over all blocks) and the tips in use over simulated time.

use super::report::{Report, TIPS_BUCKET_SECONDS};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 340.0;
const MARGIN: f64 = 50.0;

/// The SVG document. `delays_ms` are the sorted first-arrival delays of
/// every (block, node) pair.
pub fn svg(report: &Report, delays_ms: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#,
        w = WIDTH,
        h = HEIGHT * 2.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    cdf_panel(&mut out, report, delays_ms);
    tips_panel(&mut out, report);
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, top: f64, title: &str, x_label: &str, y_label: &str) {
    let (left, right, bottom) = (MARGIN, WIDTH - 20.0, top + HEIGHT - MARGIN);
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" font-size="14" text-anchor="middle">{title}</text>"#,
        x = WIDTH / 2.0,
        y = top + 20.0
    );
    let _ = writeln!(
        out,
        r#"<path d="M{left},{t} V{bottom} H{right}" stroke="black" fill="none"/>"#,
        t = top + 30.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{x_label}</text>"#,
        x = WIDTH / 2.0,
        y = bottom + 35.0
    );
    let _ = writeln!(
        out,
        r#"<text x="15" y="{y}" transform="rotate(-90 15 {y})" text-anchor="middle">{y_label}</text>"#,
        y = top + HEIGHT / 2.0
    );
}

/// Maps a value in [0, max] onto the plot's x range.
fn x_of(value: f64, max: f64) -> f64 {
    MARGIN + (WIDTH - 20.0 - MARGIN) * (value / max).clamp(0.0, 1.0)
}

fn y_of(top: f64, fraction: f64) -> f64 {
    let (high, low) = (top + 30.0, top + HEIGHT - MARGIN);
    low - (low - high) * fraction.clamp(0.0, 1.0)
}

fn cdf_panel(out: &mut String, report: &Report, delays_ms: &[f64]) {
    let top = 0.0;
    axes(
        out,
        top,
        &format!(
            "Block propagation: {} nodes, {} blocks (seed {})",
            report.nodes, report.blocks_mined, report.seed
        ),
        "ms since the block was mined",
        "fraction of nodes holding it",
    );
    let pairs = (report.nodes as f64 * report.blocks_mined.max(1) as f64).max(1.0);
    let max_ms = delays_ms.last().copied().unwrap_or(1.0).max(1.0);
    for step in 0..=5 {
        let value = max_ms * step as f64 / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="middle">{value:.0}</text>"#,
            x = x_of(value, max_ms),
            y = top + HEIGHT - MARGIN + 15.0
        );
        let fraction = step as f64 / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="end">{fraction:.1}</text>"#,
            x = MARGIN - 5.0,
            y = y_of(top, fraction) + 4.0
        );
    }
    // At most ~600 points: every k-th sample.
    let stride = (delays_ms.len() / 600).max(1);
    let mut path = format!("M{},{}", x_of(0.0, max_ms), y_of(top, 0.0));
    for (index, delay) in delays_ms.iter().enumerate().step_by(stride) {
        let _ = write!(
            path,
            " L{:.1},{:.1}",
            x_of(*delay, max_ms),
            y_of(top, (index + 1) as f64 / pairs)
        );
    }
    if let Some(last) = delays_ms.last() {
        let _ = write!(
            path,
            " L{:.1},{:.1}",
            x_of(*last, max_ms),
            y_of(top, delays_ms.len() as f64 / pairs)
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="{path}" stroke="#1f77b4" stroke-width="2" fill="none"/>"##
    );
}

fn tips_panel(out: &mut String, report: &Report) {
    let top = HEIGHT;
    axes(
        out,
        top,
        "Tips in use (most per 10 simulated seconds)",
        "simulated seconds",
        "distinct tips",
    );
    let series = &report.tips_in_use_series;
    let max_tips = series.iter().copied().max().unwrap_or(1).max(1) as f64;
    let max_s = (series.len() as f64 * TIPS_BUCKET_SECONDS as f64).max(1.0);
    for step in 0..=5 {
        let value = max_s * step as f64 / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="middle">{value:.0}</text>"#,
            x = x_of(value, max_s),
            y = top + HEIGHT - MARGIN + 15.0
        );
    }
    for step in 0..=4 {
        let value = max_tips * step as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="end">{value:.0}</text>"#,
            x = MARGIN - 5.0,
            y = y_of(top, value / max_tips) + 4.0
        );
    }
    let mut path = String::new();
    for (bucket, tips) in series.iter().enumerate() {
        let x = x_of(bucket as f64 * TIPS_BUCKET_SECONDS as f64, max_s);
        let y = y_of(top, *tips as f64 / max_tips);
        let _ = write!(
            path,
            "{}{x:.1},{y:.1}",
            if bucket == 0 { "M" } else { " L" }
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="{path}" stroke="#d62728" stroke-width="1.5" fill="none"/>"##
    );
}
