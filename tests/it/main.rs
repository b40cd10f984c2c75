//! The one integration-test binary (every test binary links all of DuckDB).

mod capture;
mod cli;
mod config;
mod daemon;
mod edges;
mod environment;
mod golden;
mod helpers;
mod layers;
mod list;
mod monitor;
mod offsite;
mod offsite_hostile;
mod outfile;
mod owner;
mod people;
mod restore;
mod retention;
mod s3;
mod timetravel;
