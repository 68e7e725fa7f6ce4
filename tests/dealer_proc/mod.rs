//! Starting the real `privlm-dealer` process for the tests that run parties against it over
//! loopback TLS (`nonlinear_dealer.rs`, `secure_dealer.rs`, `secrets_hygiene.rs`).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use privlm::protocols::channel::tls::{Fingerprint, Identity};

/// A fresh directory for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills the dealer if the test fails half-way.
pub struct Dealer(pub Child);

impl Drop for Dealer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `privlm-dealer` pinning `peers` for `sessions` sessions; returns it, its address and
/// its fingerprint.
pub async fn start_dealer_sessions(
    dir: &std::path::Path,
    peers: &[Fingerprint],
    sessions: usize,
) -> (Dealer, String, Fingerprint) {
    let dealer_dir = dir.join("dealer");
    let fp = Identity::load_or_create(&dealer_dir).unwrap().fingerprint();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-dealer"));
    let sessions = sessions.to_string();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--sessions",
        &sessions,
        "--identity",
    ])
    .arg(&dealer_dir);
    for p in peers {
        cmd.args(["--peer-fingerprint", &p.to_hex()]);
    }
    // The address goes to standard output, the logs to standard error.
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start privlm-dealer");
    let stdout = child.stdout.take().unwrap();
    let dealer = Dealer(child);
    let addr = listening_addr(stdout).await;
    (dealer, addr, fp)
}

/// Reads the dealer's standard output up to its `listening on ADDR` line and returns ADDR;
/// the rest of the output is drained on a thread so the dealer never blocks on a full pipe.
pub async fn listening_addr(stdout: ChildStdout) -> String {
    tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("dealer exited early").unwrap();
            if let Some(a) = line.strip_prefix("privlm-dealer listening on ") {
                std::thread::spawn(move || for _ in lines {});
                return a.trim().to_string();
            }
        }
    })
    .await
    .unwrap()
}
