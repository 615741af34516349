//! The one report shape every benchmark prints and writes:
//! `{"bench", "machine": {"cores"}, "figures": {name: number}, "targets": [{figure, op, value, met}]}`.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

/// How a figure is held to its target.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum Op {
    /// The figure must be at most the value.
    #[serde(rename = "<=")]
    AtMost,
    /// The figure must be at least the value.
    #[serde(rename = ">=")]
    AtLeast,
}

/// A declared target and whether the run met it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Target {
    /// The figure held to the target.
    pub figure: String,
    /// The comparison.
    pub op: Op,
    /// The bound.
    pub value: f64,
    /// Whether the figure met it.
    pub met: bool,
}

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
}

/// A benchmark report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BenchReport {
    /// The benchmark's name.
    pub bench: String,
    /// Where it ran.
    pub machine: Machine,
    /// Every figure measured, by name (units in the name: `_ms`, `_per_s`, `_ratio`).
    pub figures: BTreeMap<String, f64>,
    /// The targets declared for this benchmark.
    pub targets: Vec<Target>,
}

impl BenchReport {
    /// An empty report for `bench` on this machine.
    pub fn new(bench: &str) -> Self {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        BenchReport {
            bench: bench.to_string(),
            machine: Machine { cores },
            figures: BTreeMap::new(),
            targets: Vec::new(),
        }
    }

    /// Records a figure.
    pub fn figure(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_string(), value);
    }

    /// Declares a target on a recorded figure; a missing figure does not meet it.
    pub fn target(&mut self, figure: &str, op: Op, value: f64) {
        let met = self.figures.get(figure).is_some_and(|measured| match op {
            Op::AtMost => *measured <= value,
            Op::AtLeast => *measured >= value,
        });
        self.targets.push(Target {
            figure: figure.to_string(),
            op,
            value,
            met,
        });
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "bench {} on {} cores", self.bench, self.machine.cores);
        for (name, value) in &self.figures {
            let _ = writeln!(out, "  {name:<40} {value:>14.3}");
        }
        for target in &self.targets {
            let op = match target.op {
                Op::AtMost => "<=",
                Op::AtLeast => ">=",
            };
            let verdict = if target.met { "met" } else { "NOT met" };
            let _ = writeln!(
                out,
                "  target {:<33} {op} {:>10.3}  {verdict}",
                target.figure, target.value
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_judged_and_serialized_in_the_documented_shape() {
        let mut report = BenchReport::new("demo");
        report.figure("latency_p99_ms", 3.0);
        report.target("latency_p99_ms", Op::AtMost, 2.0);
        report.target("missing", Op::AtLeast, 1.0);
        assert!(!report.targets[0].met);
        assert!(!report.targets[1].met);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["bench"], "demo");
        assert_eq!(json["targets"][0]["op"], "<=");
        assert!(json["machine"]["cores"].as_u64().is_some());
        assert_eq!(json["figures"]["latency_p99_ms"], 3.0);
    }
}
