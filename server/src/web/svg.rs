//! The compliance trend as an SVG drawn on the server: no script, no
//! chart library, readable without colour (a line plus labelled axes).

use std::fmt::Write;

/// `points`: (day `YYYY-MM-DD`, share 0..=1). Escaping: the only text is
/// dates and numbers we format ourselves.
pub fn trend(points: &[(String, f64)], title: &str) -> String {
    let (w, h) = (640.0, 240.0);
    let (left, right, top, bottom) = (48.0, 16.0, 28.0, 36.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"##,
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<title>{}</title><rect width="{w}" height="{h}" fill="#ffffff"/>"##,
        escape(title)
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = top + plot_h * (1.0 - pct as f64 / 100.0);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d0d0d0"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#222">{pct} %</text>"##,
            w - right,
            left - 6.0,
            y + 4.0
        );
    }
    if points.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="#222">Noch keine Tageswerte</text>"##,
            left + plot_w / 2.0,
            top + plot_h / 2.0
        );
    } else {
        let n = points.len();
        let x_of = |i: usize| {
            if n == 1 {
                left + plot_w / 2.0
            } else {
                left + plot_w * i as f64 / (n - 1) as f64
            }
        };
        let mut path = String::new();
        for (i, (_, share)) in points.iter().enumerate() {
            let y = top + plot_h * (1.0 - share.clamp(0.0, 1.0));
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                x_of(i),
                y
            );
        }
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#0b5394" stroke-width="2.5"/>"##,
            path.trim_end()
        );
        for (i, (_, share)) in points.iter().enumerate() {
            let y = top + plot_h * (1.0 - share.clamp(0.0, 1.0));
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{y:.1}" r="3" fill="#0b5394"/>"##,
                x_of(i)
            );
        }
        for i in [0, n - 1] {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="{}" fill="#222">{}</text>"##,
                x_of(i),
                h - 12.0,
                if i == 0 && n > 1 { "start" } else { "end" },
                escape(&german_day(&points[i].0))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn german_day(day: &str) -> String {
    match day.split('-').collect::<Vec<_>>().as_slice() {
        [y, m, d] => format!("{d}.{m}.{y}"),
        _ => day.to_owned(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_line_through_every_day() {
        let svg = trend(
            &[("2026-12-01".into(), 0.5), ("2026-12-02".into(), 0.75)],
            "Konformität <kus>",
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("01.12.2026") && svg.contains("02.12.2026"));
        assert!(svg.contains("&lt;kus&gt;") && !svg.contains("<kus>"));
    }

    #[test]
    fn says_so_without_data() {
        assert!(trend(&[], "x").contains("Noch keine Tageswerte"));
    }
}
