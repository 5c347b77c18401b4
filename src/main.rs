//! The `cairn` command-line program: a thin layer over the library.

#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;

fn main() {
    // First, while there is one thread: passphrases leave the environment.
    cli::take_secret_env();
    cairn::failpoint::setup_from_env();
    std::process::exit(cli::run());
}
