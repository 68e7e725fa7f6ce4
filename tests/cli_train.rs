//! `privlm train` forwards to the trainer binary (`privlm-train`, workspace crate `train/`):
//! arguments and exit status pass through, and a missing trainer is explained.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn train_forwards_arguments_and_exit_status() {
    let dir = tmp_dir("fake");
    let fake = dir.join("privlm-train");
    std::fs::write(&fake, "#!/bin/sh\necho \"fake trainer got: $*\"\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_privlm"))
        .args(["train", "--corpus", "some dir", "--steps", "5"])
        .env("PRIVLM_TRAIN_BIN", &fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fake trainer got: --corpus some dir --steps 5"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(3));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_trainer_says_how_to_build_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_privlm"))
        .args(["train", "--help"])
        .env("PRIVLM_TRAIN_BIN", "/nonexistent/privlm-train")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("/nonexistent/privlm-train")
            && stderr.contains("cargo build --release -p privlm-train"),
        "{stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_privlm"))
        .arg("help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("privlm train"));
}
