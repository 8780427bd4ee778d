//! Fuzz target `form`: arbitrary bytes through `gatehouse::fuzzing::form`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::form(data));
