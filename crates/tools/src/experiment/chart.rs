//! `zygote experiment`'s chart: total Pss against the number of instances, both
//! methods, drawn with plotters as SVG and PNG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use std::sync::OnceLock;

use super::{ExperimentError, ExperimentReport};
use crate::report::Method;

const SIZE: (u32, u32) = (960, 600);
const MIB: f64 = 1024.0 * 1024.0;

/// Register the font as plotters' `sans-serif` (once per process: plotters keeps it
/// for the life of the process).
pub fn register_font(path: &Path) -> Result<(), ExperimentError> {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    if REGISTERED.get().is_some() {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|source| ExperimentError::Font { path: path.to_path_buf(), source })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| ExperimentError::BadFont { path: path.to_path_buf() })?;
    let _ = REGISTERED.set(());
    Ok(())
}

fn color(m: Method) -> RGBColor {
    match m {
        Method::Zygote => RGBColor(31, 119, 180),
        _ => RGBColor(214, 39, 40),
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &ExperimentReport) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let max_pss = r.samples.iter().map(|s| s.total.pss).max().unwrap_or(0) as f64 / MIB;
    let y_top = if max_pss > 0.0 { max_pss * 1.1 } else { 1.0 };
    let x_top = r.instances as u32 + 1;
    let program = Path::new(&r.program).file_name().map_or(r.program.clone(), |n| n.to_string_lossy().into_owned());
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Total PSS of instances of {program}"), ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0u32..x_top, 0f64..y_top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("instances")
        .y_desc("total PSS (MiB)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(e)?;
    for m in super::METHODS {
        let c = color(m);
        let points: Vec<(u32, f64)> = r
            .samples
            .iter()
            .filter(|s| s.method == m)
            .map(|s| (s.instances as u32, s.total.pss as f64 / MIB))
            .collect();
        let label = match m {
            Method::Zygote => "zygote",
            _ => "plain exec",
        };
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(3)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

pub fn draw_svg(path: &Path, r: &ExperimentReport) -> Result<(), ExperimentError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw(root, r).map_err(|message| ExperimentError::Chart { path: path.to_path_buf(), message })
}

pub fn draw_png(path: &Path, r: &ExperimentReport) -> Result<(), ExperimentError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(root, r).map_err(|message| ExperimentError::Chart { path: path.to_path_buf(), message })
}
