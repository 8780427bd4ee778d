//! Fuzz target `path`: arbitrary bytes through `gatehouse::fuzzing::path`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::path(data));
