//! jailswap: swap the read-only template under running jails as a
//! journaled transaction, with health-checked automatic rollback.
//!
//! The modules follow the life of a transaction: [`config`] and [`fstab`]
//! read what the administrator wrote; [`transaction`] checks it against the
//! host (preflight) and [`plan`] turns it into ordered steps; [`journal`]
//! makes the plan and every step durable; [`executor`] carries the steps out
//! on a [`host`]; [`recover`] finishes what an interruption left behind.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
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
pub mod plan;
pub mod process;
pub mod prune;
pub mod recover;
pub mod report;
pub mod sandbox;
pub mod service;
pub mod status;
pub mod timeline;
pub mod transaction;
