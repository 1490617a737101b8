#![no_main]
// The body lives in tl_tests::fuzz so that the test suite replays the corpus without libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tl_tests::fuzz::lir_text(data));
