//! Fuzz target `config`: arbitrary bytes through `gatehouse::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::config(data));
