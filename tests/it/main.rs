//! The one integration-test binary (every test binary links all of DuckDB).
//! One file per subsystem; the harnesses (a workspace, the daemon as a
//! process or in this one, the offsite remotes: S3 servers and a
//! directory) in `helpers/`.

mod blocks;
mod capture;
mod cli;
mod config;
mod continuous;
mod daemon_offsite;
mod daemon_service;
mod daemon_socket;
mod daemon_triggers;
mod doctor;
mod environment;
mod golden;
mod hazards;
mod helpers;
mod incremental;
mod layers;
mod list;
mod monitor;
mod offsite;
mod offsite_backends;
mod offsite_hostile;
mod outfile;
mod owner;
mod rescue;
mod restore;
mod retention;
mod timetravel;
mod usage;
mod wal;
