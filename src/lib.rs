//! jailswap: swap the read-only template under running jails as a
//! journaled transaction, with health-checked automatic rollback.
//!
//! The rooms, in the order a transaction meets them (docs/design.md draws
//! the arrows that may and may not exist between them):
//! - [`cli`], [`config`], [`fstab`]: what the administrator wrote, parsed
//!   and validated before anything happens;
//! - [`commands`]: one file per verb, and [`output`], the only writer of
//!   stdout and stderr;
//! - [`transaction`] and [`preflight`]: from a request to a plan, nothing
//!   changed yet; [`plan`]: pure, configuration and observations in,
//!   ordered steps with their undos out;
//! - [`journal`]: the only module that speaks SQL; [`executor`]: carries a
//!   plan out, writing ahead; [`recover`]: observes, decides, finishes;
//! - [`host`]: the one door to the world (store, mounts, jails, commands,
//!   health probes); [`health`], [`process`], [`lock`]: what the engine
//!   needs around it;
//! - [`import`], [`logging`], [`metrics`], [`sandbox`], [`service`]: the
//!   edges (importing existing setups, syslog, Prometheus, the demo).

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod executor;
pub mod fstab;
pub mod health;
pub mod host;
pub mod import;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod order;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod process;
pub mod recover;
pub mod sandbox;
pub mod service;
pub mod template;
pub mod transaction;
