//! The table: each relay figure beside the baseline read straight from the fake upstream
//! in the same run, then which targets are met.
use std::collections::BTreeMap;
use std::time::Duration;

use crate::upstream::Shape;
use crate::{Hold, ModeResult, Pair, Stats};

/// Target: added first-token p50 at the busy load (ms).
const FIRST_P50_MS: f64 = 1.0;
/// Target: added first-token p99 at the busy load (ms).
const FIRST_P99_MS: f64 = 3.0;
/// Target: added inter-chunk gap p99 at the busy load (ms).
const GAP_P99_MS: f64 = 1.0;
/// Target: completed streams per relay CPU-second at the busy load.
const STREAMS_PER_CPU_SEC: f64 = 1_500.0;
/// Target: relay memory per held stream (KiB).
const KIB_PER_STREAM: f64 = 16.0;

/// The `p` quantile of sorted microseconds, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn added(relay: Option<f64>, direct: Option<f64>) -> Option<f64> {
    Some(relay? - direct?)
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => " ok",
        Some(false) => " MISS",
        None => "",
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A row: the metric, its target, then (direct, relay, added) per mode.
struct Row {
    label: String,
    target: String,
    cells: Vec<[String; 3]>,
}

fn latency_rows(rows: &mut Vec<Row>, results: &[ModeResult], pick: impl Fn(&ModeResult) -> &Pair, busy: bool) {
    type Series = fn(&Stats) -> &Vec<u64>;
    let series: [(&str, Series, f64, Option<f64>); 5] = [
        ("first token p50 ms", |s| &s.first_token, 0.50, busy.then_some(FIRST_P50_MS)),
        ("first token p99 ms", |s| &s.first_token, 0.99, busy.then_some(FIRST_P99_MS)),
        ("chunk gap p99 ms", |s| &s.gaps, 0.99, busy.then_some(GAP_P99_MS)),
        ("chunk latency p50 ms", |s| &s.latency, 0.50, None),
        ("chunk latency p99 ms", |s| &s.latency, 0.99, None),
    ];
    for (label, get, p, target) in series {
        let cells = results
            .iter()
            .map(|r| {
                let pair = pick(r);
                let (direct, relay) = (percentile(get(&pair.direct), p), percentile(get(&pair.relay), p));
                let plus = added(relay, direct);
                let verdict = target.and_then(|t| plus.map(|a| a <= t));
                [ms(direct), ms(relay), format!("{}{}", plus.map_or("-".into(), |a| format!("{a:+.2}")), mark(verdict))]
            })
            .collect();
        rows.push(Row {
            label: format!("  {label}"),
            target: target.map_or_else(String::new, |t| format!("+{t} added")),
            cells,
        });
    }
    rows.push(Row {
        label: "  completed / failed".into(),
        target: String::new(),
        cells: results
            .iter()
            .map(|r| {
                let pair = pick(r);
                [
                    format!("{}/{}", pair.direct.completed, pair.direct.failed),
                    format!("{}/{}", pair.relay.completed, pair.relay.failed),
                    String::new(),
                ]
            })
            .collect(),
    });
}

fn streams_per_cpu_sec(pair: &Pair) -> Option<f64> {
    (pair.relay_cpu_secs > 0.0).then(|| pair.relay.completed as f64 / pair.relay_cpu_secs)
}

fn held_all(hold: &Hold) -> bool {
    hold.peak_open == hold.streams && hold.completed == hold.streams && hold.failed == 0
}

fn hold_rows(rows: &mut Vec<Row>, results: &[ModeResult], direct: &[Hold], i: usize, largest: bool) {
    let baseline = direct.get(i);
    let streams = results.first().and_then(|r| r.holds.get(i)).map_or(0, |h| h.streams);
    rows.push(Row { label: format!("hold {} slow streams", thousands(streams)), target: String::new(), cells: vec![] });
    let count = |h: &Hold| format!("{}/{}/{}", h.peak_open, h.completed, h.failed);
    rows.push(Row {
        label: "  held at once / completed / failed".into(),
        target: if largest { "all".into() } else { String::new() },
        cells: results
            .iter()
            .map(|r| {
                let hold = r.holds.get(i);
                let verdict = if largest { hold.map(held_all) } else { None };
                [baseline.map_or("-".into(), count), hold.map_or("-".into(), count), mark(verdict).trim().to_string()]
            })
            .collect(),
    });
    rows.push(Row {
        label: "  seconds until all open".into(),
        target: String::new(),
        cells: results
            .iter()
            .map(|r| {
                let secs = |h: &Hold| format!("{:.1}", h.ramp.as_secs_f64());
                [baseline.map_or("-".into(), secs), r.holds.get(i).map_or("-".into(), secs), String::new()]
            })
            .collect(),
    });
    rows.push(Row {
        label: "  relay KiB per held stream".into(),
        target: format!("<= {KIB_PER_STREAM}"),
        cells: results
            .iter()
            .map(|r| {
                let kib = r.holds.get(i).and_then(|h| h.kib_per_stream);
                let detail = r.holds.get(i).map_or(String::new(), |h| {
                    format!("{:.1} ({}->{} MiB)", kib.unwrap_or(0.0), h.rss_before_kib / 1024, h.rss_held_kib / 1024)
                });
                [
                    String::new(),
                    if kib.is_some() { detail } else { "-".into() },
                    mark(kib.map(|k| k <= KIB_PER_STREAM)).trim().into(),
                ]
            })
            .collect(),
    });
    rows.push(Row {
        label: "  relay store writes per second".into(),
        target: String::new(),
        cells: results
            .iter()
            .map(|r| {
                let writes = r.holds.get(i).and_then(|h| h.writes_per_sec);
                [String::new(), writes.map_or("n/a".into(), |w| format!("{w:.0}")), String::new()]
            })
            .collect(),
    });
}

fn errors_of(label: &str, errors: &BTreeMap<String, usize>) {
    let mut sorted: Vec<_> = errors.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1));
    for (error, count) in sorted.into_iter().take(4) {
        println!("  {label}: {count} x {error}");
    }
}

pub fn print(results: &[ModeResult], direct_holds: &[Hold], hold_shape: Shape, elapsed: Duration) {
    let Some(first) = results.first() else { return };
    let mut rows = Vec::new();
    let mut header = Row { label: "metric".into(), target: "target".into(), cells: Vec::new() };
    for r in results {
        header.cells.push(["direct".into(), format!("relay {}", r.mode.label()), "added".into()]);
    }
    rows.push(header);
    let light = first.light.load;
    rows.push(Row {
        label: format!("light: {} streams x {} rounds", light.streams, light.rounds),
        target: String::new(),
        cells: vec![],
    });
    latency_rows(&mut rows, results, |r| &r.light, false);
    let busy = first.busy.load;
    rows.push(Row {
        label: format!("busy: {} streams x {} rounds", thousands(busy.streams), busy.rounds),
        target: String::new(),
        cells: vec![],
    });
    latency_rows(&mut rows, results, |r| &r.busy, true);
    rows.push(Row {
        label: "  streams per relay CPU-second".into(),
        target: format!(">= {STREAMS_PER_CPU_SEC}"),
        cells: results
            .iter()
            .map(|r| {
                let rate = streams_per_cpu_sec(&r.busy);
                [
                    String::new(),
                    rate.map_or("-".into(), |v| format!("{v:.0} ({:.2} CPU-s)", r.busy.relay_cpu_secs)),
                    mark(rate.map(|v| v >= STREAMS_PER_CPU_SEC)).trim().into(),
                ]
            })
            .collect(),
    });
    let holds = first.holds.len();
    for i in 0..holds {
        hold_rows(&mut rows, results, direct_holds, i, i + 1 == holds);
    }

    let label_width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    let target_width = rows.iter().map(|r| r.target.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; results.len() * 3];
    for row in &rows {
        for (m, cell) in row.cells.iter().enumerate() {
            for (c, text) in cell.iter().enumerate() {
                widths[m * 3 + c] = widths[m * 3 + c].max(text.chars().count());
            }
        }
    }
    println!();
    println!(
        "Added = relay minus direct, percentile by percentile. Light/busy: {} chunks {} ms apart; \
         holds: {} chunks {} ms apart.",
        first.light.load.shape.chunks,
        first.light.load.shape.interval.as_millis(),
        hold_shape.chunks,
        hold_shape.interval.as_millis(),
    );
    for row in &rows {
        let mut line = format!("{:label_width$}  {:target_width$}", row.label, row.target);
        for (m, cell) in row.cells.iter().enumerate() {
            line.push_str(" |");
            for (c, text) in cell.iter().enumerate() {
                line.push_str(&format!(" {:>w$}", text, w = widths[m * 3 + c]));
            }
        }
        println!("{}", line.trim_end());
    }

    println!();
    println!("Targets (busy load = {} streams):", thousands(busy.streams));
    let largest = first.holds.last().map_or(0, |h| h.streams);
    for r in results {
        let pair = &r.busy;
        let p = |s: &Stats, q| (percentile(&s.first_token, q), percentile(&s.gaps, q));
        let ((d50, _), (r50, _)) = (p(&pair.direct, 0.50), p(&pair.relay, 0.50));
        let ((d99, dg99), (r99, rg99)) = (p(&pair.direct, 0.99), p(&pair.relay, 0.99));
        let first50 = added(r50, d50);
        let first99 = added(r99, d99);
        let gap99 = added(rg99, dg99);
        let rate = streams_per_cpu_sec(pair);
        let hold = r.holds.last();
        let kib = hold.and_then(|h| h.kib_per_stream);
        let verdict = |met: Option<bool>| match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "unknown",
        };
        println!("  relay {}:", r.mode.label());
        println!(
            "    added first-token p50 <= {FIRST_P50_MS} ms: {} ({} ms)",
            verdict(first50.map(|v| v <= FIRST_P50_MS)),
            ms(first50)
        );
        println!(
            "    added first-token p99 <= {FIRST_P99_MS} ms: {} ({} ms)",
            verdict(first99.map(|v| v <= FIRST_P99_MS)),
            ms(first99)
        );
        println!(
            "    added gap p99 <= {GAP_P99_MS} ms: {} ({} ms)",
            verdict(gap99.map(|v| v <= GAP_P99_MS)),
            ms(gap99)
        );
        println!(
            "    >= {STREAMS_PER_CPU_SEC} completed streams per relay CPU-second: {} ({})",
            verdict(rate.map(|v| v >= STREAMS_PER_CPU_SEC)),
            rate.map_or("-".into(), |v| format!("{v:.0}"))
        );
        println!(
            "    <= {KIB_PER_STREAM} KiB per held stream ({} held): {} ({})",
            thousands(largest),
            verdict(kib.map(|k| k <= KIB_PER_STREAM)),
            kib.map_or("-".into(), |k| format!("{k:.1} KiB"))
        );
        println!(
            "    {} concurrent streams held, all completed: {} ({})",
            thousands(largest),
            verdict(hold.map(held_all)),
            hold.map_or("-".into(), |h| format!(
                "{} at once, {} completed, {} failed",
                h.peak_open, h.completed, h.failed
            ))
        );
    }

    let mut any = false;
    for r in results {
        for (label, errors) in [
            ("light direct", &r.light.direct.errors),
            ("light relay", &r.light.relay.errors),
            ("busy direct", &r.busy.direct.errors),
            ("busy relay", &r.busy.relay.errors),
        ]
        .into_iter()
        .chain(r.holds.iter().map(|h| ("hold relay", &h.errors)))
        {
            if !errors.is_empty() {
                if !any {
                    println!("\nFailures (most frequent first):");
                    any = true;
                }
                errors_of(&format!("{} {label}", r.mode.label()), errors);
            }
        }
    }
    for h in direct_holds {
        if !h.errors.is_empty() {
            if !any {
                println!("\nFailures (most frequent first):");
                any = true;
            }
            errors_of(&format!("hold {} direct", h.streams), &h.errors);
        }
    }
    let per_mode: Vec<String> = results.iter().map(|r| format!("{} {:.0} s", r.mode.label(), r.seconds)).collect();
    println!("\nrun took {:.0} s ({})", elapsed.as_secs_f64(), per_mode.join(", "));
}
