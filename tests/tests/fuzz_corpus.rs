//! Replays every saved fuzzing input (`fuzz/corpus/FOLDER/*`, minimized with libFuzzer's
//! `-set_cover_merge=1`, and `fuzz/regressions/FOLDER/*`, inputs that once crashed) through the
//! fuzz targets' bodies (`tl_tests::fuzz`), without libFuzzer: none may panic. See
//! docs/robustness.md for how to fuzz further.

use std::panic::{AssertUnwindSafe, catch_unwind};
use tl_tests::fuzz::TARGETS;
use tl_tests::repo_root;

#[test]
fn every_saved_fuzz_input_runs_without_a_panic() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target, inputs) in TARGETS {
        let mut files = Vec::new();
        for folder in ["corpus", "regressions"] {
            let dir = repo_root().join("fuzz").join(folder).join(inputs);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no saved inputs for the fuzz target `{name}`");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    println!("replayed {replayed} fuzz inputs");
    assert!(failures.is_empty(), "{} inputs panic:\n{}", failures.len(), failures.join("\n"));
}
