//! The program itself, end to end: every launch agrees with the host, and both errors come
//! back rendered at their place in the source.

#[test]
fn the_program_runs_and_reports_its_errors() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tl-embed-app")).env("TL_CACHE_DIR", "off").output().expect("the program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for backend in ["vm  ", "simt", "cpu "] {
        assert!(stdout.contains(&format!("saxpy   on {backend}")) && stdout.contains(&format!("row_sum on {backend}")), "{stdout}");
    }
    assert_eq!(stdout.matches(" 0 wrong of ").count(), stdout.matches(" wrong of ").count(), "{stdout}");
    assert!(stdout.contains("--> broken.tl:2:35") && stdout.contains("expected f32, found a bool"), "{stdout}");
    assert!(stdout.contains("--> saxpy.tl:1:43") && stdout.contains("shape [4] does not match [n] = [8]"), "{stdout}");
}
