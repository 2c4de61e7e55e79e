//! Terminal rendering of a trace and its analysis: the waterfall, the
//! per-service latency table and the root-cause line. Plain text, ASCII
//! bars, deterministic for the same input.

use crate::analysis::{Analysis, Blame};
use crate::tree::Trace;
use std::collections::HashMap;
use std::fmt::Write;

/// Indentation stops growing here, so a deep chain keeps room for its bars.
const MAX_INDENT_DEPTH: usize = 24;
/// The bar never gets narrower than this, whatever `width` says.
const MIN_BAR: usize = 10;

/// A duration in nanoseconds for people: `850ns`, `12.5µs`, `120.00ms`, `3.20s`.
pub fn format_duration(nanos: u64) -> String {
    match nanos {
        0..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{:.1}µs", nanos as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", nanos as f64 / 1e6),
        _ => format!("{:.2}s", nanos as f64 / 1e9),
    }
}

/// The waterfall: a header, a time scale, then one line per span in
/// [`Trace::preorder`] order:
///
/// ```text
/// *! frontend GET /checkout        |##########################| 120.00ms
/// ```
///
/// `*` marks a span with time on the critical path, `!` an error. The
/// operation is indented two spaces per level. The bar spans the trace's
/// time range: `=` is the span's time, `#` its time on the critical path.
/// `width` is the whole line's width in columns (the terminal's width); the
/// bar gets what the name and duration columns leave, at least 10 columns.
/// `analysis` must come from [`crate::analyze`] on the same trace.
pub fn render_waterfall(trace: &Trace, analysis: &Analysis, width: usize) -> String {
    let Some((t0, t1)) = trace.bounds() else {
        return "empty trace: no spans\n".to_owned();
    };
    let total = (t1 - t0).max(1);
    let spans = trace.spans();
    let timing: HashMap<_, _> = analysis.spans.iter().map(|t| (t.span_id, t)).collect();
    let mut on_path: HashMap<_, Vec<(u64, u64)>> = HashMap::new();
    for segment in &analysis.critical_path {
        on_path
            .entry(segment.span_id)
            .or_default()
            .push((segment.start_unix_nano, segment.end_unix_nano));
    }

    let rows: Vec<(usize, String, String)> = trace
        .preorder()
        .iter()
        .map(|&i| {
            let span = &spans[i];
            let indent = "  ".repeat(trace.depth(i).min(MAX_INDENT_DEPTH));
            let orphan = match (trace.parent(i), span.parent_span_id) {
                (None, Some(missing)) if trace.is_orphan(i) => {
                    format!(" (parent {missing} missing)")
                }
                (None, Some(_)) => " (parent loop cut)".to_owned(),
                _ => String::new(),
            };
            let name = format!("{indent}{} {}{orphan}", span.service, span.name);
            let duration = format_duration(span.end_unix_nano - span.start_unix_nano);
            (i, name, duration)
        })
        .collect();
    let duration_width = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
    let longest_name = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    // Two mark columns, a space, the name, " |", the bar, "| ", the duration.
    let fixed = 3 + 2 + 2 + duration_width;
    let name_width = longest_name
        .min(width.saturating_sub(fixed + MIN_BAR))
        .max(longest_name.min(20));
    let bar_width = width.saturating_sub(fixed + name_width).max(MIN_BAR);

    let mut out = String::new();
    let trace_id = analysis
        .trace_id
        .map_or_else(|| "(no id)".to_owned(), |id| id.to_string());
    let _ = writeln!(
        out,
        "trace {trace_id}  {}  {}  {}  {}",
        format_duration(t1 - t0),
        count(analysis.span_count, "span"),
        count(analysis.service_count, "service"),
        count(analysis.error_count, "error")
    );
    let end_label = format_duration(t1 - t0);
    let scale_gap = bar_width.saturating_sub(1 + end_label.chars().count());
    let _ = writeln!(
        out,
        "{:pad$}0{:scale_gap$}{end_label}",
        "",
        "",
        pad = 3 + name_width + 2
    );
    for (i, name, duration) in rows {
        let span = &spans[i];
        let facts = timing.get(&span.span_id);
        let critical = facts.is_some_and(|t| t.critical_nano > 0);
        let error = facts.is_some_and(|t| t.error);
        let mut bar = vec![' '; bar_width];
        let cells = |start: u64, end: u64| {
            let cell = |t: u64, round_up: bool| {
                let scaled = u128::from(t - t0) * bar_width as u128;
                let whole = scaled / u128::from(total);
                let up = round_up && !scaled.is_multiple_of(u128::from(total));
                (whole as usize + usize::from(up)).min(bar_width)
            };
            let first = cell(start, false).min(bar_width - 1);
            let last = cell(end, true).max(first + 1);
            first..last
        };
        for c in cells(span.start_unix_nano, span.end_unix_nano) {
            bar[c] = '=';
        }
        for &(start, end) in on_path.get(&span.span_id).into_iter().flatten() {
            for c in cells(start, end) {
                bar[c] = '#';
            }
        }
        let bar: String = bar.into_iter().collect();
        let _ = writeln!(
            out,
            "{}{} {:name_width$} |{bar}| {duration:>duration_width$}",
            if critical { '*' } else { ' ' },
            if error { '!' } else { ' ' },
            truncate(&name, name_width),
        );
    }
    out.push_str("* on the critical path (# its time there)  ! error\n");
    out
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The per-service latency table: spans, errors, self time and its share of
/// all self time, time on the critical path and its share, busiest on the
/// path first; then one line naming the bottleneck.
pub fn render_service_table(analysis: &Analysis) -> String {
    if analysis.services.is_empty() {
        return "no spans\n".to_owned();
    }
    let self_total = analysis
        .services
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.self_nano));
    let percent =
        |part: u64, whole: u64| format!("{:.1}%", 100.0 * part as f64 / whole.max(1) as f64);
    let headers = [
        "SERVICE",
        "SPANS",
        "ERRORS",
        "SELF TIME",
        "SELF %",
        "CRITICAL PATH",
        "PATH %",
    ];
    let rows: Vec<[String; 7]> = analysis
        .services
        .iter()
        .map(|s| {
            [
                s.service.clone(),
                s.span_count.to_string(),
                s.error_count.to_string(),
                format_duration(s.self_nano),
                percent(s.self_nano, self_total),
                format_duration(s.critical_nano),
                percent(s.critical_nano, analysis.critical_path_nano),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (k, cell) in cells.iter().enumerate() {
            let w = widths[k];
            if k == 0 {
                let _ = write!(text, "{cell:<w$}");
            } else {
                let _ = write!(text, "  {cell:>w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    if let Some(top) = analysis.bottlenecks.first() {
        let _ = writeln!(
            out,
            "bottleneck: {} ({}) {} on the critical path, {:.1}% of it",
            top.service,
            top.operation,
            format_duration(top.critical_nano),
            100.0 * top.share
        );
    }
    out
}

/// One line naming the most likely root cause, or `no error`.
pub fn root_cause_line(analysis: &Analysis) -> String {
    let Some(cause) = analysis.root_causes.first() else {
        return "no error".to_owned();
    };
    let mut line = match cause.blame {
        Blame::Peer => format!(
            "root cause: {} (call {:?} from {} failed; {} sent no span)",
            cause.blamed_service, cause.operation, cause.service, cause.blamed_service
        ),
        Blame::Span => format!(
            "root cause: {} ({:?} failed)",
            cause.blamed_service, cause.operation
        ),
    };
    if !cause.message.is_empty() {
        let _ = write!(line, ": {}", cause.message);
    }
    if !cause.propagated_through.is_empty() {
        let _ = write!(
            line,
            "; propagated through {}",
            cause.propagated_through.join(" -> ")
        );
    }
    if !cause.reached_root {
        line.push_str("; handled before the root");
    }
    let others = analysis.root_causes.len() - 1;
    if others > 0 {
        let spans = if others == 1 { "span" } else { "spans" };
        let _ = write!(line, "; {others} more failing {spans}");
    }
    line
}
