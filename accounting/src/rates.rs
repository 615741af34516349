//! The rate file: what each unit of each usage figure earns.
//!
//! ```toml
//! # Base units of the payout asset per unit of each figure.
//! moves_executed = 1000
//! group_rounds = 5000
//! state_bytes = 1        # per byte held at an epoch's end, per epoch
//! relayed_bytes = 2
//! da_chunks = 300
//! uptime_seconds = 10
//! ```
//!
//! Every figure must be priced (a forgotten line would silently pay nothing) and nothing else
//! may appear (a misspelt line would too).

use std::path::Path;

use serde::Deserialize;

use crate::usage::{Figure, Usage};

/// Why a rate file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    /// The file could not be read.
    #[error("rate file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape (an unknown key, a missing figure, a negative or
    /// fractional rate).
    #[error("rate file {path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What the parser said, with the line.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRates {
    moves_executed: u64,
    group_rounds: u64,
    state_bytes: u64,
    relayed_bytes: u64,
    da_chunks: u64,
    uptime_seconds: u64,
}

/// Base units of the payout asset per unit of each figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    per_unit: [u64; 6],
}

/// The example rate file shipped with the crate (`accounting/rates.example.toml`): the rates
/// the devnet's nodes price their epochs with.
pub const EXAMPLE: &str = include_str!("../rates.example.toml");

impl Rates {
    /// The rates of [`EXAMPLE`].
    pub fn example() -> Rates {
        Rates::parse("rates.example.toml", EXAMPLE).expect("the shipped example rate file parses")
    }

    /// Rates from `(figure, rate)` pairs; unnamed figures earn nothing.
    pub fn new(pairs: &[(Figure, u64)]) -> Rates {
        let mut per_unit = [0; 6];
        for &(figure, rate) in pairs {
            per_unit[figure.index()] = rate;
        }
        Rates { per_unit }
    }

    /// Parses a rate file's text; `path` only names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Rates, RatesError> {
        let raw: RawRates = toml::from_str(text).map_err(|error| RatesError::Malformed {
            path: path.to_string(),
            message: error.to_string().trim_end().to_string(),
        })?;
        Ok(Rates::new(&[
            (Figure::MovesExecuted, raw.moves_executed),
            (Figure::GroupRounds, raw.group_rounds),
            (Figure::StateBytes, raw.state_bytes),
            (Figure::RelayedBytes, raw.relayed_bytes),
            (Figure::DaChunks, raw.da_chunks),
            (Figure::UptimeSeconds, raw.uptime_seconds),
        ]))
    }

    /// Reads and parses a rate file.
    pub fn load(path: &Path) -> Result<Rates, RatesError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RatesError::Read {
            path: name.clone(),
            source,
        })?;
        Rates::parse(&name, &text)
    }

    /// The rate of one figure.
    pub fn rate(&self, figure: Figure) -> u64 {
        self.per_unit[figure.index()]
    }

    /// What each figure of `usage` earns, in [`Figure::ALL`] order. A product of two u64 fits
    /// in a u128, so nothing here can overflow.
    pub fn compensation(&self, usage: &Usage) -> [u128; 6] {
        Figure::ALL.map(|figure| u128::from(usage.get(figure)) * u128::from(self.rate(figure)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "moves_executed = 1000\ngroup_rounds = 5000\nstate_bytes = 1\n\
                        relayed_bytes = 2\nda_chunks = 300\nuptime_seconds = 10\n";

    #[test]
    fn the_shipped_example_prices_every_figure() {
        let rates = Rates::example();
        assert_eq!(rates, Rates::parse("x", GOOD).expect("parses"));
    }

    #[test]
    fn a_complete_file_prices_every_figure() {
        let rates = Rates::parse("rates.toml", GOOD).expect("parses");
        assert_eq!(rates.rate(Figure::MovesExecuted), 1000);
        assert_eq!(rates.rate(Figure::UptimeSeconds), 10);
        let usage = Usage {
            moves_executed: u64::MAX,
            uptime_seconds: 3,
            ..Usage::default()
        };
        let paid = rates.compensation(&usage);
        assert_eq!(paid[0], u128::from(u64::MAX) * 1000);
        assert_eq!(paid[5], 30);
    }

    #[test]
    fn a_missing_unknown_negative_or_fractional_rate_is_a_clear_error() {
        let cases = [
            (GOOD.replace("da_chunks = 300\n", ""), "da_chunks"),
            (format!("{GOOD}moves_execute = 1\n"), "moves_execute"),
            (GOOD.replace("= 1000", "= -1"), "moves_executed"),
            (GOOD.replace("= 1000", "= 0.5"), "moves_executed"),
            ("moves_executed = \n".to_string(), "rates.toml"),
        ];
        for (text, named) in cases {
            let error = Rates::parse("rates.toml", &text)
                .expect_err(&text)
                .to_string();
            assert!(error.contains("rates.toml"), "{error}");
            assert!(error.contains(named), "{text:?} gave {error}");
        }
    }
}
