//! The console's own small SVG renderer: a layered dependency graph, bar
//! charts, line charts of live series and a trace waterfall, drawn on the
//! server as text.

use crate::web::{enc, esc};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

const NODE_W: f64 = 150.0;
const NODE_H: f64 = 24.0;
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 10.0;

/// A dependency graph: `nodes` by name, `edges` caller -> callee. Callees
/// are drawn left of their callers, one column per layer (a node's layer is
/// the longest chain of callees below it), so calls read left to right as
/// arrows pointing back towards providers. `focus` is highlighted.
pub fn dependency_graph(
    nodes: &[String],
    edges: &[(String, String)],
    focus: Option<&str>,
) -> String {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut callees: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (from, to) in edges {
        if let (Some(&f), Some(&t)) = (index.get(from.as_str()), index.get(to.as_str()))
            && f != t
        {
            callees[f].push(t);
        }
    }
    // Longest path to a sink, iteratively (cycles are cut at the node on the stack).
    let mut layer: Vec<Option<usize>> = vec![None; nodes.len()];
    for start in 0..nodes.len() {
        let mut stack = vec![(start, 0usize)];
        let mut on_stack = vec![false; nodes.len()];
        on_stack[start] = true;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if layer[node].is_some() {
                on_stack[node] = false;
                stack.pop();
                continue;
            }
            if let Some(&child) = callees[node].get(*next) {
                *next += 1;
                if layer[child].is_none() && !on_stack[child] {
                    on_stack[child] = true;
                    stack.push((child, 0));
                }
                continue;
            }
            let l = callees[node]
                .iter()
                .filter_map(|&c| layer[c])
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            layer[node] = Some(l);
            on_stack[node] = false;
            stack.pop();
        }
    }
    let mut columns: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in layer.iter().enumerate() {
        columns.entry(l.unwrap_or(0)).or_default().push(i);
    }
    let mut position = vec![(0.0, 0.0); nodes.len()];
    let mut height: f64 = 0.0;
    for (col, members) in &columns {
        let mut members = members.clone();
        members.sort_by(|a, b| nodes[*a].cmp(&nodes[*b]));
        for (row, &i) in members.iter().enumerate() {
            let x = 10.0 + *col as f64 * (NODE_W + GAP_X);
            let y = 10.0 + row as f64 * (NODE_H + GAP_Y);
            position[i] = (x, y);
            height = height.max(y + NODE_H + 10.0);
        }
    }
    let width = 20.0 + columns.len() as f64 * (NODE_W + GAP_X) - GAP_X;
    let mut out = format!(
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"dependency graph\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#778\"/></marker></defs>"
    );
    for (from, targets) in callees.iter().enumerate() {
        let (fx, fy) = position[from];
        for &to in targets {
            let (tx, ty) = position[to];
            let (x1, y1) = (fx, fy + NODE_H / 2.0);
            let (x2, y2) = (tx + NODE_W, ty + NODE_H / 2.0);
            let mid = (x1 + x2) / 2.0;
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"M{x1:.0},{y1:.0} C{mid:.0},{y1:.0} {mid:.0},{y2:.0} {x2:.0},{y2:.0}\" marker-end=\"url(#arrow)\"><title>{} → {}</title></path>",
                esc(&nodes[from]),
                esc(&nodes[to])
            );
        }
    }
    for (i, name) in nodes.iter().enumerate() {
        let (x, y) = position[i];
        let class = if focus == Some(name.as_str()) {
            "node focus"
        } else {
            "node"
        };
        let label: String = if name.chars().count() > 20 {
            name.chars().take(19).chain(['…']).collect()
        } else {
            name.clone()
        };
        let _ = write!(
            out,
            "<a href=\"/services/{}\"><g class=\"{class}\"><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"4\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{}</text><title>{}</title></g></a>",
            enc(name),
            x + 8.0,
            y + 16.0,
            esc(&label),
            esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars: a label and a count each, longest bar the largest value.
pub fn bar_chart(title: &str, bars: &[(String, usize)]) -> String {
    let label_w = 220.0;
    let bar_w = 360.0;
    let row_h = 22.0;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1) as f64;
    let height = 30.0 + bars.len() as f64 * row_h;
    let width = label_w + bar_w + 60.0;
    let mut out = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"{t}\"><text class=\"title\" x=\"0\" y=\"16\">{t}</text>",
        t = esc(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 26.0 + i as f64 * row_h;
        let w = (*value as f64 / max * bar_w).max(1.0);
        let _ = write!(
            out,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text><rect class=\"bar\" x=\"{label_w:.0}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{:.0}\"/><text x=\"{:.1}\" y=\"{:.0}\">{value}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(label),
            row_h - 6.0,
            label_w + w + 6.0,
            y + 15.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// Colours of a line chart's series, in order.
const PALETTE: [&str; 6] = [
    "#2563eb", "#ea580c", "#dc2626", "#16a34a", "#9333ea", "#0891b2",
];

/// A value as an axis label: fewer decimals as it grows.
fn axis_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart over the `window_ms` before `now_ms`: one line per named
/// series of `(ms since the epoch, value)` points, the y axis from 0 to the
/// largest value. Each line says how many points it has (`data-points`).
pub fn line_chart(
    title: &str,
    unit: &str,
    series: &[(String, Vec<(i64, f64)>)],
    now_ms: i64,
    window_ms: i64,
) -> String {
    let (width, height) = (460.0, 170.0);
    let (left, right, top, bottom) = (52.0, width - 12.0, 24.0, height - 36.0);
    let from = now_ms - window_ms;
    let max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = |at: i64| {
        left + (at - from).clamp(0, window_ms) as f64 / window_ms.max(1) as f64 * (right - left)
    };
    let y = |v: f64| bottom - v.clamp(0.0, max) / max * (bottom - top);
    let mut out = format!(
        "<svg class=\"chart line\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"{t}\">\
         <text class=\"title\" x=\"0\" y=\"14\">{t} ({u})</text>\
         <path class=\"axis\" d=\"M{left},{top} L{left},{bottom} L{right},{bottom}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{lx}\" y=\"{ty:.0}\" text-anchor=\"end\">{hi}</text><text x=\"{lx}\" y=\"{bottom}\" text-anchor=\"end\">0</text>\
         <text x=\"{left}\" y=\"{xl}\">-{minutes}m</text><text x=\"{right}\" y=\"{xl}\" text-anchor=\"end\">now</text>",
        t = esc(title),
        u = esc(unit),
        lx = left - 4.0,
        ty = top + 4.0,
        hi = axis_value(max),
        xl = bottom + 14.0,
        minutes = window_ms / 60_000,
    );
    let mut legend_x = left;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let drawn: Vec<String> = points
            .iter()
            .filter(|(at, v)| *at >= from && v.is_finite())
            .map(|&(at, v)| format!("{:.1},{:.1}", x(at), y(v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" data-series=\"{n}\" data-points=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"><title>{n}</title></polyline>\
             <rect x=\"{legend_x:.0}\" y=\"{ly:.0}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{tx:.0}\" y=\"{tyl:.0}\">{n}</text>",
            drawn.len(),
            drawn.join(" "),
            n = esc(name),
            ly = height - 14.0,
            tx = legend_x + 14.0,
            tyl = height - 5.0,
        );
        legend_x += 24.0 + 7.0 * name.chars().count().min(24) as f64;
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        let _ = write!(
            out,
            "<text class=\"empty\" x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">no data in this window</text>",
            (left + right) / 2.0,
            (top + bottom) / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

/// A trace waterfall: one bar per span at its offset from the trace's start,
/// indented by depth; spans on the critical path and failed spans marked,
/// the root cause's span outlined.
pub fn waterfall(analysis: &traces::Analysis) -> String {
    let label_w = 300.0;
    let bar_w = 560.0;
    let row_h = 20.0;
    let start = analysis.start_unix_nano;
    let total = analysis.duration_nano.max(1) as f64;
    let root_cause: Vec<_> = analysis.root_causes.iter().map(|r| r.span_id).collect();
    let height = 10.0 + analysis.spans.len() as f64 * row_h;
    let width = label_w + bar_w + 90.0;
    let mut out = format!(
        "<svg class=\"waterfall\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"trace waterfall\">"
    );
    for (i, span) in analysis.spans.iter().enumerate() {
        let y = 5.0 + i as f64 * row_h;
        let x = label_w + (span.start_unix_nano.saturating_sub(start)) as f64 / total * bar_w;
        let w = ((span.end_unix_nano.saturating_sub(span.start_unix_nano)) as f64 / total * bar_w)
            .max(1.0);
        let mut class = String::from("span");
        if span.critical_nano > 0 {
            class.push_str(" critical");
        }
        if span.error {
            class.push_str(" error");
        }
        if root_cause.contains(&span.span_id) {
            class.push_str(" root-cause");
        }
        let label = format!(
            "{}{} {}",
            "  ".repeat(span.depth.min(12)),
            span.service,
            span.operation
        );
        let _ = write!(
            out,
            "<g class=\"{class}\"><text x=\"{:.0}\" y=\"{:.0}\" xml:space=\"preserve\">{}</text><rect x=\"{x:.1}\" y=\"{:.0}\" width=\"{w:.1}\" height=\"{:.0}\"/>\
             <text x=\"{:.1}\" y=\"{:.0}\">{}</text><title>{} {} · {} · self {}</title></g>",
            4.0,
            y + 13.0,
            esc(&label),
            y + 2.0,
            row_h - 4.0,
            x + w + 4.0,
            y + 13.0,
            traces::format_duration(span.end_unix_nano.saturating_sub(span.start_unix_nano)),
            esc(&span.service),
            esc(&span.operation),
            traces::format_duration(span.end_unix_nano.saturating_sub(span.start_unix_nano)),
            traces::format_duration(span.self_nano),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_left_of_their_callers_and_cycles_end() {
        let nodes: Vec<String> = ["web", "orders", "payments", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let edges: Vec<(String, String)> = [
            ("web", "orders"),
            ("orders", "payments"),
            ("a", "b"),
            ("b", "a"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let svg = dependency_graph(&nodes, &edges, Some("orders"));
        let x_of = |name: &str| -> f64 {
            let at = svg.find(&format!("href=\"/services/{name}\"")).unwrap();
            let rest = &svg[at..];
            let x = rest.find("x=\"").unwrap() + 3;
            rest[x..x + rest[x..].find('"').unwrap()].parse().unwrap()
        };
        assert!(x_of("payments") < x_of("orders"));
        assert!(x_of("orders") < x_of("web"));
        assert!(svg.contains("node focus"));
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
    }

    #[test]
    fn lines_place_points_in_the_window_and_scale_to_the_largest_value() {
        let series = vec![
            ("blue".to_string(), vec![(40_000, 5.0), (100_000, 10.0)]),
            ("green".to_string(), vec![(0, 1.0), (70_000, 0.0)]),
        ];
        let svg = line_chart("requests/s", "req/s", &series, 100_000, 60_000);
        // The window starts at 40 s: green's point at 0 s is before it.
        assert!(
            svg.contains("data-series=\"blue\" data-points=\"2\""),
            "{svg}"
        );
        assert!(
            svg.contains("data-series=\"green\" data-points=\"1\""),
            "{svg}"
        );
        // blue from the left edge (5) to the right (10), on a y axis up to 11.
        assert!(svg.contains("points=\"52.0,84.0 448.0,34.0\""), "{svg}");
        assert!(svg.contains(">11.0<"), "{svg}");
        let empty = line_chart("p99", "ms", &[("blue".to_string(), vec![])], 0, 60_000);
        assert!(empty.contains("no data in this window"));
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bar_chart("pins", &[("v1".into(), 10), ("v2".into(), 5)]);
        assert!(svg.contains("width=\"360.0\""), "{svg}");
        assert!(svg.contains("width=\"180.0\""), "{svg}");
    }
}
