#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peapod::fuzzing::static_config(data));
