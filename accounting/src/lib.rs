//! What each node did for the network, what it is owed, and how it is paid.
//!
//! Four layers, each usable on its own:
//! - [`ledger`]: soft accounting between peers (SWAP-style, no money moves): per peer, the
//!   service given and received, with bounds whose crossing is reported once;
//! - [`usage`]: a node's signed usage per epoch, cross-checked against what its group and
//!   peers observed, summed over a period;
//! - [`report`]: the compensation report, one CSV row per node, from the registry on the upper
//!   chain, the accepted usage, a rate file and the receipts of earlier payouts;
//! - [`payout`]: payouts grouped per wallet and per payout method (the wallet's features decide
//!   the method), executed through a [`payout::PayoutRail`] and recorded as receipts that make a
//!   re-run pay nothing twice.
//!
//! A node runs the first two layers through [`node::NodeAccounting`]: its meter and its ledger,
//! its signed epochs written to its data directory, and the operator metrics ([`metrics`]).

pub mod dashboard;
pub mod ledger;
pub mod meter;
pub mod metrics;
pub mod node;
pub mod payout;
pub mod rails;
pub mod rates;
pub mod report;
pub mod usage;

pub use ledger::{LedgerConfig, LedgerEvent, PeerLedger, Service};
pub use payout::{Payout, PayoutMethod, PayoutRail, Receipt, ReceiptBook};
pub use rates::Rates;
pub use report::{Period, ReportRow};
pub use usage::{Figure, SignedUsage, Usage, UsageReport};
