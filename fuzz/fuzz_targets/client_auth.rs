//! Fuzz target `client_auth`: arbitrary bytes through `gatehouse::fuzzing::client_auth`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::fuzzing::client_auth(data));
