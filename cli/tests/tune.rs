//! `tlc tune`: a search on the cpu backend stores its winner in the dispatch table, a second
//! run finds it there, a damaged table is dropped with a warning and tuned again, the
//! `compile` target compiles every candidate, progress goes to standard error, and mistakes
//! in the options are usage errors.

use std::process::Command;

fn tlc(args: &[&str], progress: &str) -> (i32, String, String) {
    tlc_with_table(args, progress, None)
}

fn tlc_with_table(args: &[&str], progress: &str, table: Option<&std::path::Path>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tlc"));
    command.args(args).env("TL_CACHE_DIR", "off").env("TL_PROGRESS", progress).env_remove("TL_TUNE_TABLE");
    if let Some(table) = table {
        command.env("TL_TUNE_TABLE", table);
    }
    let out = command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().expect("tlc runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("tlc-tune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// A small search: 4 candidates, 2 of which (BK = 128 with groups of 64) the kernel refuses.
fn search(table: &str) -> Vec<String> {
    [
        "tune", "stdlib/kernels/qmatmul.tl", "--size", "m=13", "--size", "n=256", "--size", "k=512", "--space", "BM=16", "--space", "BN=32,64",
        "--space", "BK=32,128", "--space", "STAGES=2", "--space", "WARPS=4", "--target", "cpu", "--runs", "1", "--table", table,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_search_is_stored_found_again_and_redone_after_damage() {
    let directory = scratch("table");
    let table = directory.join("dispatch.tbl");
    let args = search(table.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = tlc(&args, "0");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("compiled 4 candidates") && out.contains("2 rejected"), "{out}");
    assert!(out.contains("2 x the kernel's requirement does not hold with BK = 128, G = 64"), "{out}");
    assert!(out.contains("timed 2 candidates"), "{out}");
    assert!(out.contains("winner BM=16 BN=") && out.contains("checked against the reference"), "{out}");
    assert!(out.contains(&format!("stored in {} under qmatmul m<=16 n=256 k=512", table.display())), "{out}");
    assert!(!err.contains("warning"), "{err}");
    let stored = std::fs::read_to_string(&table).unwrap();
    assert!(stored.starts_with("tl dispatch table, format 1\n1\n"), "{stored}");

    // The same problem bucket again: found, not searched.
    let (code, out, _) = tlc(&args, "0");
    assert_eq!(code, 0);
    assert!(out.contains("qmatmul is tuned for m<=16 n=256 k=512 on cpu ") && out.contains("--retune"), "{out}");

    // A truncated table: dropped with a warning, searched again, written whole.
    std::fs::write(&table, &stored.as_bytes()[..stored.len() / 2]).unwrap();
    let (code, out, err) = tlc(&args, "0");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("is dropped") && err.contains("tuned again"), "{err}");
    assert!(out.contains("winner BM=16"), "{out}");
    let (_, out, err) = tlc(&args, "0");
    assert!(out.contains("is tuned for") && !err.contains("warning"), "{out}{err}");

    // `tlc run --tuned` finds the winner for a problem of the bucket, and the defaults for
    // another bucket; both compute the right thing.
    let winner = out.lines().next().unwrap().split(": ").nth(1).unwrap().split(" (").next().unwrap().to_string();
    let run = ["run", "stdlib/kernels/qmatmul.tl", "--backend", "cpu", "--arg", "m=9", "--arg", "n=256", "--arg", "k=512", "--tuned"];
    let (code, out, err) = tlc_with_table(&run, "0", Some(&table));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(&format!("tl: tuned qmatmul: {winner} ({})", table.display())), "{winner}: {err}");
    assert!(out.contains("PASS qmatmul backend=cpu"), "{out}");
    let other_bucket = ["run", "stdlib/kernels/qmatmul.tl", "--backend", "cpu", "--arg", "m=17", "--arg", "n=256", "--arg", "k=512", "--tuned"];
    let (code, out, err) = tlc_with_table(&other_bucket, "0", Some(&table));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("tl: qmatmul is not tuned for m<=32 n=256 k=512 on cpu ") && err.contains("its defaults"), "{err}");
    let (code, _, err) = tlc_with_table(&["run", "stdlib/kernels/qmatmul.tl", "--arg", "m=9", "--tuned"], "0", Some(&table));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tuned takes the parameters tuned for a device: --backend cpu or cuda, not vm"), "{err}");

    // --retune searches even so.
    let mut retune = args.clone();
    retune.push("--retune");
    let (code, out, _) = tlc(&retune, "0");
    assert_eq!(code, 0);
    assert!(out.contains("winner BM=16"), "{out}");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn the_compile_target_compiles_every_candidate_with_progress() {
    let (code, out, err) = tlc(
        &["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=16", "--size", "n=4096", "--size", "k=4096", "--space", "BM=16,32", "--space", "BN=64", "--space", "BK=32,64", "--space", "STAGES=2", "--space", "WARPS=4", "--target", "compile", "--jobs", "2"],
        "0.001",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("compiled 4 candidates") && out.contains("with 2 workers: 0 rejected"), "{out}");
    assert!(out.contains("nothing is stored"), "{out}");
    assert!(err.contains("tl: tune `qmatmul` for m<=16 n=4096 k=4096 on none (sm_80): 4 candidates"), "{err}");
    assert!(err.contains("tl: tune `qmatmul`: compiled 4 of 4 candidates (0 rejected)"), "{err}");
}

#[test]
fn several_values_of_a_size_are_tuned_in_turn() {
    let directory = scratch("several");
    let table = directory.join("dispatch.tbl");
    let args = [
        "tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1,16,40", "--size", "n=256", "--size", "k=512", "--space", "BM=16", "--space", "BN=32,64",
        "--space", "BK=32", "--space", "STAGES=2", "--space", "WARPS=4", "--target", "cpu", "--runs", "1", "--table", table.to_str().unwrap(),
    ];
    let (code, out, err) = tlc(&args, "0");
    assert_eq!(code, 0, "{out}{err}");
    for bucket in ["m<=1 ", "m<=16 ", "m<=64 "] {
        assert!(out.contains(&format!("under qmatmul {bucket}n=256 k=512")), "{bucket}: {out}");
    }
    assert_eq!(std::fs::read_to_string(&table).unwrap().lines().nth(1), Some("3"));
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn option_mistakes_are_usage_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["tune", "stdlib/kernels/qmatmul.tl"], "needs the problem: --size"),
        (&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=x"], "`x` is not an integer"),
        (&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1", "--space", "BM=16,y"], "`y` in `BM=16,y` is not an integer"),
        (&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1", "--target", "tpu"], "unknown --target `tpu`"),
        (&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1", "--jobs", "0"], "--jobs must be at least 1"),
        (&["run", "stdlib/kernels/qmatmul.tl", "--size", "m=1"], "--size does not apply to `tlc run`"),
    ];
    for (args, message) in cases {
        let (code, _, err) = tlc(args, "0");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // A request the tuner refuses: exit 1 with its reason.
    let (code, _, err) = tlc(&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1", "--size", "rows=2", "--target", "cpu"], "0");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no integer scalar parameter `rows`"), "{err}");
    let (code, _, err) = tlc(&["tune", "stdlib/kernels/qmatmul.tl", "--size", "m=1", "--space", "SPLITS=2", "--target", "cpu"], "0");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no integer compile-time parameter `SPLITS`"), "{err}");
}
