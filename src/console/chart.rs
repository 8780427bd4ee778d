//! Line charts drawn on the server as SVG: no chart library, no script, and nothing a strict CSP
//! refuses (presentation attributes, never `style`).

use crate::pages::esc;
use std::fmt::Write;

/// One line: its name (the legend) and a value per point (none: a gap).
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

const W: f64 = 560.0;
const H: f64 = 160.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;
const COLOURS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
];

/// A value as an axis label: few digits, no exponent.
fn label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The top of the scale: the largest value rounded up to 1, 2 or 5 times a power of ten.
fn scale_top(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|t| *t >= max)
        .unwrap_or(10.0 * p)
}

/// An SVG chart of `series` over `slots` points (the last at the right edge); `unit` names the
/// values, `span` the time the chart covers (shown under it).
pub fn svg(title: &str, unit: &str, series: &[Series], slots: usize, span: &str) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = scale_top(max);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let step = plot_w / (slots.max(2) - 1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" role=\"img\" class=\"chart\" aria-label=\"{t}\">",
        h = H + 18.0 * series.len().div_ceil(3) as f64,
        t = esc(title),
    );
    let _ = write!(
        out,
        "<g font-size=\"11\" fill=\"currentColor\"><text x=\"{x}\" y=\"{y0}\" text-anchor=\"end\">{top}</text>\
         <text x=\"{x}\" y=\"{y1}\" text-anchor=\"end\">0</text><text x=\"{LEFT}\" y=\"{yb}\">{span}</text>\
         <text x=\"{r}\" y=\"{yb}\" text-anchor=\"end\">now · {unit}</text></g>\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#9ca3af\" stroke-width=\"0.5\"/>",
        x = LEFT - 4.0,
        y0 = TOP + 8.0,
        y1 = TOP + plot_h,
        yb = TOP + plot_h + 15.0,
        r = W - 8.0,
        top = label(top),
        span = esc(span),
        unit = esc(unit),
    );
    for (i, s) in series.iter().enumerate() {
        draw(&mut out, i, s, slots, step, top, plot_h);
    }
    out.push_str("</svg>");
    out
}

/// One series: its lines (a gap splits them), its latest value as a dot, its legend entry.
fn draw(out: &mut String, i: usize, s: &Series, slots: usize, step: f64, top: f64, plot_h: f64) {
    let colour = COLOURS.get(i % COLOURS.len()).unwrap_or(&"#4b5563");
    let offset = slots.saturating_sub(s.values.len());
    // a gap (no value) ends one line and the next value starts another
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for (j, v) in s.values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = LEFT + (offset + j) as f64 * step;
                let y = TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
                if let Some(run) = runs.last_mut() {
                    run.push(format!("{x:.1},{y:.1}"));
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    let points: usize = runs.iter().map(Vec::len).sum();
    let _ = write!(
        out,
        "<g class=\"series\" data-name=\"{}\" data-points=\"{points}\">",
        esc(&s.name)
    );
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            run.join(" ")
        );
    }
    // the latest value as a dot: a line of one point draws nothing
    if let Some((x, y)) = runs
        .iter()
        .rev()
        .find_map(|r| r.last())
        .and_then(|p| p.split_once(','))
    {
        let _ = write!(
            out,
            "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{colour}\"/>"
        );
    }
    let (lx, ly) = (
        LEFT + (i % 3) as f64 * 170.0,
        H + 12.0 + (i / 3) as f64 * 18.0,
    );
    let _ = write!(
        out,
        "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
         <text x=\"{}\" y=\"{ly}\" font-size=\"11\" fill=\"currentColor\">{}</text></g>",
        ly - 9.0,
        lx + 14.0,
        esc(&s.name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_to_one_two_or_five() {
        assert_eq!(scale_top(0.0), 1.0);
        assert_eq!(scale_top(0.7), 1.0);
        assert_eq!(scale_top(1.3), 2.0);
        assert_eq!(scale_top(3.0), 5.0);
        assert_eq!(scale_top(730.0), 1000.0);
    }

    #[test]
    fn draws_each_series_with_its_points_and_gaps() {
        let s = vec![
            Series {
                name: "api <v2>".into(),
                values: vec![Some(1.0), None, Some(3.0), Some(4.0)],
            },
            Series {
                name: "none".into(),
                values: vec![None, None],
            },
        ];
        let out = svg("Requests", "req/s", &s, 10, "15 min");
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(out.contains("data-name=\"api &lt;v2&gt;\" data-points=\"3\""));
        assert_eq!(out.matches("<polyline").count(), 2, "a gap splits the line");
        assert!(out.contains("data-name=\"none\" data-points=\"0\""));
        assert!(!out.contains("style="));
    }
}
