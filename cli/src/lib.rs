//! The wallet's library half: the encrypted keystore, which the `chorus` binary and the fuzz
//! targets (`fuzz/`) share.

pub mod keystore;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
