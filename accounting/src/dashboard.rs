//! The Grafana dashboard of the operator metrics (`accounting/grafana/operators.json`), and what
//! its tests need to hold it to the metrics a node exports: every PromQL query it holds, and the
//! metric names each query reads.

/// The dashboard, as committed.
pub const OPERATORS: &str = include_str!("../grafana/operators.json");

/// Why a dashboard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// Not JSON.
    #[error("dashboard is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A panel target or template variable without a query.
    #[error("dashboard: {0}")]
    Shape(String),
}

/// Every PromQL query of the dashboard: each panel target's `expr` and each query variable's
/// `query`, in order.
pub fn queries(dashboard: &str) -> Result<Vec<String>, DashboardError> {
    let value: serde_json::Value = serde_json::from_str(dashboard)?;
    let mut out = Vec::new();
    let panels = value["panels"]
        .as_array()
        .ok_or_else(|| DashboardError::Shape("no panels".into()))?;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("untitled");
        let targets = panel["targets"]
            .as_array()
            .filter(|targets| !targets.is_empty())
            .ok_or_else(|| DashboardError::Shape(format!("panel {title:?} has no targets")))?;
        for target in targets {
            let expr = target["expr"].as_str().ok_or_else(|| {
                DashboardError::Shape(format!("a target of panel {title:?} has no expr"))
            })?;
            out.push(expr.to_string());
        }
    }
    for variable in value["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or_else(|| variable["query"].as_str())
                .ok_or_else(|| DashboardError::Shape("a query variable has no query".into()))?;
            out.push(query.to_string());
        }
    }
    Ok(out)
}

/// PromQL words that stand where a metric name could but are not one: keywords, and the
/// aggregation operators (which may be followed by `by (..)` before their parenthesis).
const KEYWORDS: [&str; 24] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names a PromQL query (or a Grafana `label_values(METRIC, label)`) reads: every
/// identifier outside label matchers, ranges, strings and grouping clauses that is not a
/// function call, a keyword or a number.
pub fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let chars: Vec<char> = query.chars().collect();
    let mut index = 0;
    // Inside `{..}`, `[..]`, a string, or the label list of `by (..)` / `without (..)`.
    let mut skip_until: Option<char> = None;
    let mut after_grouping = false;
    while index < chars.len() {
        let c = chars[index];
        if let Some(end) = skip_until {
            if c == end {
                skip_until = None;
            }
            index += 1;
            continue;
        }
        match c {
            '{' => skip_until = Some('}'),
            '[' => skip_until = Some(']'),
            '"' | '\'' | '`' => skip_until = Some(c),
            '(' if after_grouping => {
                skip_until = Some(')');
                after_grouping = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = index;
                while index < chars.len()
                    && (chars[index].is_ascii_alphanumeric()
                        || chars[index] == '_'
                        || chars[index] == ':')
                {
                    index += 1;
                }
                let word: String = chars[start..index].iter().collect();
                let next = chars[index..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    after_grouping = true;
                } else if next == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                    // A function call or a keyword.
                } else if after_grouping_label(&chars[..start]) {
                    // The label argument of `label_values(metric, label)`.
                } else {
                    names.push(word);
                }
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    names
}

/// Whether the text before a word ends in `, ` inside a call, where `label_values(m, label)`
/// puts its label.
fn after_grouping_label(before: &[char]) -> bool {
    before.iter().rev().find(|c| !c.is_whitespace()) == Some(&',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_ranges_and_grouping() {
        assert_eq!(
            metric_names(
                r#"sum by (instance) (increase(tickrate_owed_total{instance=~"a.*"}[1h]))"#
            ),
            vec!["tickrate_owed_total"]
        );
        assert_eq!(
            metric_names("label_values(tickrate_usage_epoch, instance)"),
            vec!["tickrate_usage_epoch"]
        );
        assert_eq!(
            metric_names("tickrate_epoch_owed / on (instance) tickrate_usage_epoch"),
            vec!["tickrate_epoch_owed", "tickrate_usage_epoch"]
        );
        assert_eq!(metric_names("up == 1"), vec!["up"]);
    }

    #[test]
    fn every_dashboard_query_reads_only_metrics_a_node_exports_and_each_is_shown() {
        let queries = queries(OPERATORS).expect("the dashboard parses");
        assert!(queries.len() >= crate::metrics::ALL.len());
        let mut shown = std::collections::BTreeSet::new();
        for query in &queries {
            let names = metric_names(query);
            assert!(!names.is_empty(), "{query:?} reads no metric");
            for name in names {
                assert!(
                    crate::metrics::ALL.contains(&name.as_str()),
                    "{query:?} reads {name}, which no node exports"
                );
                shown.insert(name);
            }
        }
        for name in crate::metrics::ALL {
            assert!(shown.contains(name), "the dashboard does not show {name}");
        }
    }

    #[test]
    fn a_dashboard_without_queries_is_refused() {
        assert!(matches!(queries("{"), Err(DashboardError::Json(_))));
        assert!(matches!(
            queries(r#"{"panels": [{"title": "x", "targets": []}]}"#),
            Err(DashboardError::Shape(_))
        ));
    }
}
