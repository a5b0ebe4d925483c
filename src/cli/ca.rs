//! `resetdesk ca ...` subcommands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn run(cmd: Command) -> u8 {
    match cmd {}
}
