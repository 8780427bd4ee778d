//! Fuzz target `jwt`: arbitrary bytes through `gatehouse::fuzzing::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::jwt(data));
