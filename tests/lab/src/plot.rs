//! The report's plots: one line per defence over the seconds of a
//! scenario, as SVG, with the attack window shaded so the eye finds when
//! the table filled and when legitimate connections stopped getting
//! through relative to it.

use std::error::Error;
use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::sample::{Run, Second};

/// Plot size in pixels.
const SIZE: (u32, u32) = (800, 400);

/// Line colours by run index (Tableau 10), so a defence has the same
/// colour in every plot of a section.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Shading of the attack window: light enough that lines stay readable.
const ATTACK: RGBColor = RGBColor(232, 232, 232);

/// Conntrack fill over time, one line per run, to `path`.
pub fn fill(path: &Path, title: &str, runs: &[Run]) -> anyhow::Result<()> {
    // Fill can pass 100 % when a defence lowers the maximum under a full
    // table; the axis grows in steps of 10 so such lines stay visible.
    let peak = runs
        .iter()
        .flat_map(|r| &r.samples)
        .map(Second::fill)
        .fold(0.0, f64::max);
    let y_max = ((peak / 10.0).ceil() * 10.0).max(100.0);
    let plot = Plot {
        caption: format!("{title}: conntrack fill"),
        y_max,
        y_desc: "conntrack fill %",
        // The table is empty before the attack, so the upper left is free.
        legend_at: SeriesLabelPosition::UpperLeft,
    };
    plot.draw(path, runs, |s| Some(s.fill()))
}

/// Share of legitimate connections succeeding per second, one line per
/// run, to `path`. Seconds without attempts leave a gap in the line:
/// drawing them as 0 % would claim failures that did not happen.
pub fn legit(path: &Path, title: &str, runs: &[Run]) -> anyhow::Result<()> {
    let plot = Plot {
        caption: format!("{title}: legitimate connects"),
        y_max: 100.0,
        y_desc: "legitimate connects succeeding %",
        // Connections succeed before the attack, so the lower left is free.
        legend_at: SeriesLabelPosition::LowerLeft,
    };
    plot.draw(path, runs, Second::legit_success)
}

/// Any per-second value of `runs` over time, to `path`; the axis runs from
/// 0 to a quarter above the largest value, so a flat line reads flat.
pub fn series(
    path: &Path,
    caption: &str,
    y_desc: &'static str,
    runs: &[Run],
    value: impl Fn(&Second) -> Option<f64>,
) -> anyhow::Result<()> {
    let peak = runs
        .iter()
        .flat_map(|r| &r.samples)
        .filter_map(&value)
        .fold(0.0, f64::max);
    let plot = Plot {
        caption: caption.to_owned(),
        y_max: (peak * 1.25).max(1.0),
        y_desc,
        legend_at: SeriesLabelPosition::LowerRight,
    };
    plot.draw(path, runs, value)
}

/// What differs between the plots.
struct Plot {
    caption: String,
    y_max: f64,
    y_desc: &'static str,
    legend_at: SeriesLabelPosition,
}

impl Plot {
    fn draw(
        &self,
        path: &Path,
        runs: &[Run],
        value: impl Fn(&Second) -> Option<f64>,
    ) -> anyhow::Result<()> {
        // plotters' errors are not always Send + Sync; keep their text.
        self.chart(path, runs, value)
            .map_err(|e| anyhow!("plotting {}: {e}", path.display()))
    }

    fn chart(
        &self,
        path: &Path,
        runs: &[Run],
        value: impl Fn(&Second) -> Option<f64>,
    ) -> Result<(), Box<dyn Error>> {
        let x_max = runs
            .iter()
            .filter_map(|r| r.samples.last())
            .map(|s| s.t)
            .fold(1.0, f64::max);

        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.caption, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..self.y_max)?;

        // The runs of a section share one attack schedule; the first
        // run's stands for all. Shaded first, so the grid and the lines
        // stay on top of it.
        if let Some(run) = runs.first() {
            let start = run.attack_start.clamp(0.0, x_max);
            let end = run.attack_end.clamp(0.0, x_max);
            if end > start {
                chart
                    .draw_series([Rectangle::new(
                        [(start, 0.0), (end, self.y_max)],
                        ATTACK.filled(),
                    )])?
                    .label("attack")
                    .legend(|(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 20, y + 5)], ATTACK.filled())
                    });
            }
        }

        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(self.y_desc)
            .x_label_formatter(&|&x| tick(x))
            .y_label_formatter(&|&y| tick(y))
            .draw()?;

        for (run, colour) in runs.iter().zip(PALETTE.iter().cycle()) {
            let style = colour.stroke_width(2);
            // The legend entry is a series of its own, so a run whose
            // line is split into segments (or has none) is listed once.
            chart
                .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), style))?
                .label(run.defence.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            let segments = run
                .samples
                .split(|s| value(s).is_none())
                .filter(|segment| !segment.is_empty());
            for segment in segments {
                let points = segment.iter().filter_map(|s| value(s).map(|v| (s.t, v)));
                // A lone point would be an invisible zero-length line.
                let dot = if segment.len() == 1 { 3 } else { 0 };
                chart.draw_series(LineSeries::new(points, style).point_size(dot))?;
            }
        }

        chart
            .configure_series_labels()
            .position(self.legend_at.clone())
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// An axis label: whole numbers without the ".0" plotters would add, a
/// decimal only where a short axis has ticks between them.
fn tick(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(defence: &str, samples: Vec<Second>) -> Run {
        Run {
            defence: defence.to_owned(),
            attack_start: 1.0,
            attack_end: 3.0,
            samples,
            ..Run::default()
        }
    }

    /// Draws both plots of `runs` into a fresh directory and returns their
    /// text.
    fn both(tag: &str, runs: &[Run]) -> [String; 2] {
        let dir = std::env::temp_dir().join(format!("guard-lab-plot-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (f, l) = (dir.join("fill.svg"), dir.join("legit.svg"));
        fill(&f, "t", runs).unwrap();
        legit(&l, "t", runs).unwrap();
        let out = [
            std::fs::read_to_string(&f).unwrap(),
            std::fs::read_to_string(&l).unwrap(),
        ];
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn no_runs_and_no_samples() {
        both("none", &[]);
        for svg in both("empty", &[run("defaults", Vec::new())]) {
            assert!(svg.starts_with("<svg"));
            assert!(svg.contains("defaults"));
        }
    }

    #[test]
    fn single_sample() {
        let s = Second {
            t: 2.0,
            count: 5,
            max: 10,
            legit_ok: 1,
            ..Second::default()
        };
        for svg in both("single", &[run("static", vec![s])]) {
            assert!(svg.starts_with("<svg") && svg.contains("static"), "{svg}");
        }
    }

    #[test]
    fn zero_data() {
        let zeros = (0..5)
            .map(|t| Second {
                t: f64::from(t),
                ..Second::default()
            })
            .collect();
        for svg in both("zero", &[run("defaults", zeros)]) {
            assert!(svg.starts_with("<svg") && svg.contains("defaults"), "{svg}");
        }
    }

    #[test]
    fn gaps_overfill_and_many_runs() {
        // More runs than colours, a table over 100 %, seconds without
        // legitimate attempts, and an attack window past the data.
        let samples: Vec<Second> = (0..6_u32)
            .map(|t| Second {
                t: f64::from(t),
                count: u64::from(t) * 30,
                max: 100,
                legit_ok: t % 2,
                ..Second::default()
            })
            .collect();
        let runs: Vec<Run> = (0..12)
            .map(|i| {
                let mut r = run(&format!("d{i}"), samples.clone());
                r.attack_end = 60.0;
                r
            })
            .collect();
        let [fill_svg, _] = both("many", &runs);
        assert!(fill_svg.contains("d11"));
    }
}
