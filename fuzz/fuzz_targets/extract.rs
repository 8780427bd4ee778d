//! Fuzz target `extract`: arbitrary bytes through `gatehouse::fuzzing::extract`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::extract(data));
