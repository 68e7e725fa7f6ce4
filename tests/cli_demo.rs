//! `privlm demo` (the README's main command) runs end to end: dealer, server and client on
//! loopback TLS, both shipped models, private text equal to the plaintext model's here, and the
//! cost comparison.

use std::process::Command;

#[test]
fn demo_runs_and_reports_both_architectures() {
    let out = Command::new(env!("CARGO_BIN_EXE_privlm"))
        .args([
            "demo",
            "--max-new-tokens",
            "3",
            "--prompt",
            "def f(x):\n    return ",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run privlm demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "SM+LN+G",
        "EReg(SM(t)+ScFuFFN)",
        "private   :",
        "plaintext :",
        "online, client→server",
        "dealer → both parties",
        "demo finished in",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from\n{stdout}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_privlm"))
        .args(["demo", "--baseline", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent"));
}
