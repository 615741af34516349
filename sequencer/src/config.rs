//! The `sequencer` binary's configuration file (TOML); flags of `sequencer run` override it.
//!
//! ```toml
//! key_file = "sequencer.key"            # written by `sequencer keygen`
//! chain_id = 4242                       # the network's chain id (every move carries it)
//! tick_ms = 10                          # time between blocks
//! client_listen = "0.0.0.0:7600"        # KCP over UDP, for players' clients
//! mesh_listen = "0.0.0.0:7601"          # KCP over UDP, for the other sequencers
//! weak_da = "data/weak-da"              # a directory, file:///dir or s3://bucket?...
//! metrics_listen = "127.0.0.1:9600"     # optional: Prometheus scrapes /metrics here
//! rpc_listen = "127.0.0.1:8545"         # optional: the Web3-compatible JSON-RPC (HTTP + WS)
//! body_listen = "0.0.0.0:7602"          # optional: QUIC, serves packed block bodies to peers
//! sponsor_refresh_ms = 1000             # how often sponsors' policies on the upper chain are
//!                                       # read again (0: never read; default 1000)
//!
//! [wal]
//! dir = "data/wal"
//! fsync = "group"                       # per-move | per-tick | group (see sequencer::wal)
//!
//! [chain]                               # the upper chain, as for shard-node
//! url = "tickrate://127.0.0.1:7300"     # or http(s)://… for the Registry contract
//! chain_id = 31337
//! registry = "0x…"                      # EVM chains only
//!
//! [[peers]]                             # where the other (and whitelisted) sequencers listen
//! id = "0x…"
//! mesh = "10.0.0.2:7601"
//! body = "10.0.0.2:7602"                # optional: its body server, asked before weak DA
//!
//! [[sponsors]]                          # optional: sponsorship policies of this sequencer; a
//! sponsor = "0x…"                       # sponsor's own policy on the upper chain wins over
//! targets = ["0x…"]                     # the one configured here
//! player_gas_budget = 1000000
//! total_gas_budget = 100000000
//! player_moves_per_second = 60
//! player_moves_burst = 120
//! ```
//!
//! The PBFT replica keeps its log in `consensus`, beside the write-ahead log's directory
//! (`data/consensus` above), so a restarted sequencer resumes its view and sequence.
//!
//! The sequencer set (IDs and BLS keys) is read from the upper chain; the chain records no
//! sequencer endpoints, so each other member's mesh address comes from `[[peers]]` (and those of
//! whitelisted sequencers outside the set, which the mesh admits too). Relative paths in the
//! file are taken from the file's folder.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use primitives::{Address, NodeId};
use serde::Deserialize;

use crate::{
    ingress::{RateLimit, SponsorPolicy},
    wal::FsyncPolicy,
};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file (or a flag) is not valid for this configuration.
    #[error("configuration {path}: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The write-ahead log's fsync setting as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncSetting {
    /// One fsync per move.
    PerMove,
    /// Group commit, at most one fsync a tick.
    PerTick,
    /// Group commit, the next fsync as soon as the previous one ends.
    Group,
}

impl std::str::FromStr for FsyncSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "per-move" => Ok(FsyncSetting::PerMove),
            "per-tick" => Ok(FsyncSetting::PerTick),
            "group" => Ok(FsyncSetting::Group),
            other => Err(format!(
                "unknown fsync policy {other:?} (per-move, per-tick or group)"
            )),
        }
    }
}

impl FsyncSetting {
    /// The policy for a sequencer ticking every `tick`.
    pub fn policy(self, tick: Duration) -> FsyncPolicy {
        match self {
            FsyncSetting::PerMove => FsyncPolicy::PerMove,
            FsyncSetting::PerTick => FsyncPolicy::Group { window: tick },
            FsyncSetting::Group => FsyncPolicy::Group {
                window: Duration::ZERO,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    url: String,
    chain_id: u64,
    #[serde(default)]
    registry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    dir: PathBuf,
    #[serde(default = "default_fsync")]
    fsync: FsyncSetting,
}

fn default_fsync() -> FsyncSetting {
    FsyncSetting::Group
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: String,
    mesh: String,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSponsor {
    sponsor: String,
    targets: Vec<String>,
    player_gas_budget: u64,
    total_gas_budget: u64,
    player_moves_per_second: u64,
    player_moves_burst: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    key_file: PathBuf,
    chain_id: u64,
    #[serde(default = "default_tick_ms")]
    tick_ms: u64,
    client_listen: String,
    mesh_listen: String,
    weak_da: String,
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    rpc_listen: Option<String>,
    #[serde(default)]
    body_listen: Option<String>,
    wal: RawWal,
    chain: RawChain,
    #[serde(default)]
    peers: Vec<RawPeer>,
    #[serde(default = "default_sponsor_refresh_ms")]
    sponsor_refresh_ms: u64,
    #[serde(default)]
    sponsors: Vec<RawSponsor>,
}

fn default_sponsor_refresh_ms() -> u64 {
    1_000
}

fn default_tick_ms() -> u64 {
    10
}

/// How the sequencer reaches the upper chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSection {
    /// The chain URL.
    pub url: String,
    /// The chain id the upper chain must have.
    pub chain_id: u64,
    /// The `Registry` contract (EVM chains only).
    pub registry: Option<Address>,
}

/// A sequencer's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerFileConfig {
    /// The key file.
    pub key_file: PathBuf,
    /// The network's chain id.
    pub chain_id: u64,
    /// Time between blocks.
    pub tick: Duration,
    /// Where clients connect.
    pub client_listen: SocketAddr,
    /// Where the other sequencers connect.
    pub mesh_listen: SocketAddr,
    /// Weak DA: a directory or URL (see `da_weak::WeakDa::from_url`).
    pub weak_da: String,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the Web3-compatible JSON-RPC is served, if anywhere.
    pub rpc_listen: Option<SocketAddr>,
    /// The write-ahead log's directory.
    pub wal_dir: PathBuf,
    /// Its fsync setting.
    pub wal_fsync: FsyncSetting,
    /// The upper chain.
    pub chain: ChainSection,
    /// Mesh addresses of the other members.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Where this sequencer serves the bodies it packs over QUIC, if it does
    /// ([`crate::bodies`]).
    pub body_listen: Option<SocketAddr>,
    /// The body servers of the other sequencers that name one.
    pub body_peers: Vec<(NodeId, SocketAddr)>,
    /// Sponsorship policies of this sequencer's configuration.
    pub sponsors: Vec<SponsorPolicy>,
    /// How often the policies on the upper chain are read again; `None`: never read.
    pub sponsor_refresh: Option<Duration>,
}

/// Flags of `sequencer run` that override the file; paths are taken as given (from the
/// working directory).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// The network's chain id.
    pub chain_id: Option<u64>,
    /// Time between blocks, in milliseconds.
    pub tick_ms: Option<u64>,
    /// Where clients connect.
    pub client_listen: Option<SocketAddr>,
    /// Where the other sequencers connect.
    pub mesh_listen: Option<SocketAddr>,
    /// Weak DA.
    pub weak_da: Option<String>,
    /// Where `/metrics` is served.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the JSON-RPC is served.
    pub rpc_listen: Option<SocketAddr>,
    /// The write-ahead log's directory.
    pub wal_dir: Option<PathBuf>,
    /// Its fsync setting.
    pub wal_fsync: Option<FsyncSetting>,
    /// The upper chain's URL.
    pub chain_url: Option<String>,
    /// The upper chain's chain id.
    pub upper_chain_id: Option<u64>,
    /// The `Registry` contract.
    pub registry: Option<Address>,
}

impl SequencerFileConfig {
    /// Reads the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, path.parent(), &name)
    }

    /// Parses a configuration; relative paths are taken from `folder`.
    pub fn parse(text: &str, folder: Option<&Path>, name: &str) -> Result<Self, ConfigError> {
        let malformed = |why: String| ConfigError::Malformed {
            path: name.to_string(),
            why,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|error| malformed(error.message().to_string()))?;
        let socket = |field: &str, text: &str| {
            text.parse::<SocketAddr>()
                .map_err(|error| malformed(format!("{field} {text:?}: {error}")))
        };
        let address = |field: &str, text: &str| {
            text.parse::<Address>()
                .map_err(|error| malformed(format!("{field} {text:?}: {error}")))
        };
        let relative = |path: PathBuf| match folder {
            Some(folder) if path.is_relative() => folder.join(path),
            _ => path,
        };
        let weak_da = if raw.weak_da.contains("://") {
            raw.weak_da
        } else {
            relative(PathBuf::from(raw.weak_da)).display().to_string()
        };
        let mut peers = Vec::with_capacity(raw.peers.len());
        let mut body_peers = Vec::new();
        for peer in &raw.peers {
            let id = NodeId(address("peers.id", &peer.id)?);
            if peers.iter().any(|(known, _)| *known == id) {
                return Err(malformed(format!("peer {} listed twice", id.0)));
            }
            peers.push((id, socket("peers.mesh", &peer.mesh)?));
            if let Some(body) = &peer.body {
                body_peers.push((id, socket("peers.body", body)?));
            }
        }
        let mut sponsors: Vec<SponsorPolicy> = Vec::with_capacity(raw.sponsors.len());
        for sponsor in &raw.sponsors {
            let policy = SponsorPolicy {
                sponsor: address("sponsors.sponsor", &sponsor.sponsor)?,
                targets: sponsor
                    .targets
                    .iter()
                    .map(|target| address("sponsors.targets", target))
                    .collect::<Result<_, _>>()?,
                player_gas_budget: sponsor.player_gas_budget,
                total_gas_budget: sponsor.total_gas_budget,
                player_rate: RateLimit {
                    per_second: sponsor.player_moves_per_second,
                    burst: sponsor.player_moves_burst,
                },
            };
            if sponsors.iter().any(|known| known.sponsor == policy.sponsor) {
                return Err(malformed(format!(
                    "sponsor {} listed twice",
                    policy.sponsor
                )));
            }
            sponsors.push(policy);
        }
        let config = SequencerFileConfig {
            sponsors,
            sponsor_refresh: (raw.sponsor_refresh_ms > 0)
                .then(|| Duration::from_millis(raw.sponsor_refresh_ms)),
            key_file: relative(raw.key_file),
            chain_id: raw.chain_id,
            tick: Duration::from_millis(raw.tick_ms),
            client_listen: socket("client_listen", &raw.client_listen)?,
            mesh_listen: socket("mesh_listen", &raw.mesh_listen)?,
            weak_da,
            metrics_listen: raw
                .metrics_listen
                .map(|text| socket("metrics_listen", &text))
                .transpose()?,
            rpc_listen: raw
                .rpc_listen
                .map(|text| socket("rpc_listen", &text))
                .transpose()?,
            wal_dir: relative(raw.wal.dir),
            wal_fsync: raw.wal.fsync,
            chain: ChainSection {
                url: raw.chain.url,
                chain_id: raw.chain.chain_id,
                registry: raw
                    .chain
                    .registry
                    .map(|registry| address("chain.registry", &registry))
                    .transpose()?,
            },
            peers,
            body_listen: raw
                .body_listen
                .map(|text| socket("body_listen", &text))
                .transpose()?,
            body_peers,
        };
        config.check().map_err(malformed)?;
        Ok(config)
    }

    /// Where the PBFT replica keeps its log: `consensus` beside the write-ahead log's directory.
    pub fn consensus_dir(&self) -> PathBuf {
        self.wal_dir.with_file_name("consensus")
    }

    /// The configuration with the flags given applied.
    pub fn with(mut self, overrides: Overrides) -> Result<Self, ConfigError> {
        let Overrides {
            chain_id,
            tick_ms,
            client_listen,
            mesh_listen,
            weak_da,
            metrics_listen,
            rpc_listen,
            wal_dir,
            wal_fsync,
            chain_url,
            upper_chain_id,
            registry,
        } = overrides;
        self.chain_id = chain_id.unwrap_or(self.chain_id);
        self.tick = tick_ms.map_or(self.tick, Duration::from_millis);
        self.client_listen = client_listen.unwrap_or(self.client_listen);
        self.mesh_listen = mesh_listen.unwrap_or(self.mesh_listen);
        self.weak_da = weak_da.unwrap_or(self.weak_da);
        self.metrics_listen = metrics_listen.or(self.metrics_listen);
        self.rpc_listen = rpc_listen.or(self.rpc_listen);
        self.wal_dir = wal_dir.unwrap_or(self.wal_dir);
        self.wal_fsync = wal_fsync.unwrap_or(self.wal_fsync);
        self.chain.url = chain_url.unwrap_or(self.chain.url);
        self.chain.chain_id = upper_chain_id.unwrap_or(self.chain.chain_id);
        self.chain.registry = registry.or(self.chain.registry);
        self.check().map_err(|why| ConfigError::Malformed {
            path: "flags".into(),
            why,
        })?;
        Ok(self)
    }

    fn check(&self) -> Result<(), String> {
        if self.tick.is_zero() || self.tick > Duration::from_secs(60) {
            return Err(format!(
                "tick_ms {} out of range (1 to 60000)",
                self.tick.as_millis()
            ));
        }
        Ok(())
    }

    /// The write-ahead log's fsync policy.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.wal_fsync.policy(self.tick)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FULL: &str = r#"
key_file = "sequencer.key"
chain_id = 4242
tick_ms = 20
client_listen = "127.0.0.1:7600"
mesh_listen = "127.0.0.1:7601"
weak_da = "data/weak-da"
metrics_listen = "127.0.0.1:9600"

[wal]
dir = "/var/lib/sequencer/wal"
fsync = "per-tick"

[chain]
url = "tickrate://127.0.0.1:7300"
chain_id = 31337

[[peers]]
id = "0x1111111111111111111111111111111111111111"
mesh = "10.0.0.2:7601"
"#;

    #[test]
    fn a_file_parses_with_paths_from_its_folder_and_flags_override_it() {
        let config = SequencerFileConfig::parse(FULL, Some(Path::new("/etc/seq")), "f").unwrap();
        assert_eq!(config.key_file, PathBuf::from("/etc/seq/sequencer.key"));
        assert_eq!(config.weak_da, "/etc/seq/data/weak-da");
        assert_eq!(config.wal_dir, PathBuf::from("/var/lib/sequencer/wal"));
        assert_eq!(
            config.fsync_policy(),
            FsyncPolicy::Group {
                window: Duration::from_millis(20)
            }
        );
        assert_eq!(config.peers.len(), 1);
        assert_eq!(config.chain.registry, None);
        assert_eq!((config.body_listen, config.body_peers.len()), (None, 0));
        assert!(config.sponsors.is_empty());
        assert_eq!(config.sponsor_refresh, Some(Duration::from_secs(1)));
        let with_sponsor = format!(
            "sponsor_refresh_ms = 0\n{FULL}\n[[sponsors]]\nsponsor = \"0x{}\"\ntargets = [\"0x{}\"]\n\
             player_gas_budget = 10\ntotal_gas_budget = 100\nplayer_moves_per_second = 1\n\
             player_moves_burst = 2\n",
            "55".repeat(20),
            "42".repeat(20)
        );
        let sponsored = SequencerFileConfig::parse(&with_sponsor, None, "f").unwrap();
        assert_eq!(sponsored.sponsor_refresh, None);
        assert_eq!(
            sponsored.sponsors,
            vec![SponsorPolicy {
                sponsor: Address::repeat_byte(0x55),
                targets: vec![Address::repeat_byte(0x42)],
                player_gas_budget: 10,
                total_gas_budget: 100,
                player_rate: RateLimit {
                    per_second: 1,
                    burst: 2
                },
            }]
        );
        let with_bodies = FULL
            .replace(
                "metrics_listen = \"127.0.0.1:9600\"",
                "metrics_listen = \"127.0.0.1:9600\"\nbody_listen = \"127.0.0.1:7602\"",
            )
            .replace(
                "mesh = \"10.0.0.2:7601\"",
                "mesh = \"10.0.0.2:7601\"\nbody = \"10.0.0.2:7602\"",
            );
        let bodies = SequencerFileConfig::parse(&with_bodies, None, "f").unwrap();
        assert_eq!(bodies.body_listen, Some("127.0.0.1:7602".parse().unwrap()));
        assert_eq!(
            bodies.body_peers,
            vec![(config.peers[0].0, "10.0.0.2:7602".parse().unwrap())]
        );
        let config = config
            .with(Overrides {
                chain_id: Some(7),
                tick_ms: Some(5),
                wal_fsync: Some(FsyncSetting::PerMove),
                chain_url: Some("http://127.0.0.1:8545".into()),
                weak_da: Some("s3://bucket".into()),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(config.chain_id, 7);
        assert_eq!(config.tick, Duration::from_millis(5));
        assert_eq!(config.fsync_policy(), FsyncPolicy::PerMove);
        assert_eq!(config.chain.url, "http://127.0.0.1:8545");
        assert_eq!(config.weak_da, "s3://bucket");
        assert!(
            config
                .with(Overrides {
                    tick_ms: Some(0),
                    ..Overrides::default()
                })
                .is_err()
        );
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let cases = [
            FULL.replace("fsync = \"per-tick\"", "fsync = \"sometimes\""),
            FULL.replace("127.0.0.1:7600", "not an address"),
            FULL.replace("0x1111111111111111111111111111111111111111", "0x11"),
            FULL.replace("tick_ms = 20", "tick_ms = 0"),
            FULL.replace("[wal]", "[wal]\nextra = 1"),
            FULL.replace("[chain]\n", "[chain]\nregistry = \"nope\"\n"),
            format!(
                "{FULL}\n[[peers]]\nid = \"0x1111111111111111111111111111111111111111\"\nmesh = \"10.0.0.3:7601\"\n"
            ),
            FULL.replace("key_file = \"sequencer.key\"\n", ""),
            FULL.replace(
                "mesh = \"10.0.0.2:7601\"",
                "mesh = \"10.0.0.2:7601\"\nbody = \"nowhere\"",
            ),
        ];
        for (index, text) in cases.iter().enumerate() {
            assert!(
                matches!(
                    SequencerFileConfig::parse(text, None, "f"),
                    Err(ConfigError::Malformed { .. })
                ),
                "case {index}"
            );
        }
        assert!(matches!(
            SequencerFileConfig::load(Path::new("/nonexistent/sequencer.toml")),
            Err(ConfigError::Io { .. })
        ));
    }
}
