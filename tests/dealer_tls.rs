//! The dealer as a separate process over loopback TLS: two parties with pinned certificates
//! fetch triples from a real `privlm-dealer`, and a party whose certificate is not pinned is
//! refused without taking the dealer down.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use privlm::protocols::beaver::TripleProvider;
use privlm::protocols::beaver::dealer::DealerClient;
use privlm::protocols::channel::tls::{self, Fingerprint, Identity};
use privlm::protocols::channel::{ChannelConfig, FramedChannel};
use privlm::protocols::ring::RingTensor;
use privlm::protocols::share::Party;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills the dealer if the test fails half-way.
struct Dealer(Child);

impl Drop for Dealer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect_party(
    addr: &str,
    id: &Identity,
    party: Party,
    dealer: Fingerprint,
    session: [u8; 32],
) -> DealerClient<FramedChannel> {
    let timeout = Duration::from_secs(20);
    let ch = tls::connect(addr, id, dealer, ChannelConfig::default(), timeout)
        .await
        .expect("TLS connect to the dealer");
    DealerClient::connect(ch, party, session)
        .await
        .expect("dealer hello")
}

fn sum(a: &RingTensor, b: &RingTensor) -> RingTensor {
    a.add(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dealer_process_serves_triples_over_tls() {
    let dir = temp_dir("dealer-tls");
    let dealer_dir = dir.join("dealer");
    let dealer_fp = Identity::load_or_create(&dealer_dir).unwrap().fingerprint();
    let p0 = Identity::generate().unwrap();
    let p1 = Identity::generate().unwrap();
    let stranger = Identity::generate().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_privlm-dealer"))
        .args(["--listen", "127.0.0.1:0", "--sessions", "1", "--identity"])
        .arg(&dealer_dir)
        .args(["--peer-fingerprint", &p0.fingerprint().to_hex()])
        .args(["--peer-fingerprint", &p1.fingerprint().to_hex()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start privlm-dealer");
    let stdout = child.stdout.take().unwrap();
    let dealer = Dealer(child);
    // The dealer prints its fingerprint, then the address it listens on, on standard output
    // (its logs go to standard error).
    let (addr, printed_fp) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut fp = String::new();
        loop {
            let line = lines.next().expect("dealer exited early").unwrap();
            if let Some(f) = line.strip_prefix("privlm-dealer certificate fingerprint ") {
                fp = f.trim().to_string();
            }
            if let Some(a) = line.strip_prefix("privlm-dealer listening on ") {
                // Keep draining stdout so the dealer never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return (a.trim().to_string(), fp);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(printed_fp, dealer_fp.to_hex());

    let timeout = Duration::from_secs(20);
    // A certificate the dealer did not pin is refused; the dealer keeps serving.
    let refused = tls::connect(
        addr.as_str(),
        &stranger,
        dealer_fp,
        ChannelConfig::default(),
        timeout,
    )
    .await;
    assert!(refused.is_err(), "an unpinned client was accepted");

    let session = [42u8; 32];
    let (mut c0, mut c1) = tokio::join!(
        connect_party(&addr, &p0, Party::P0, dealer_fp, session),
        connect_party(&addr, &p1, Party::P1, dealer_fp, session)
    );

    let (t0, t1) = tokio::join!(c0.elementwise(1000), c1.elementwise(1000));
    let (t0, t1) = (t0.unwrap(), t1.unwrap());
    let (a, b, c) = (sum(&t0.a, &t1.a), sum(&t0.b, &t1.b), sum(&t0.c, &t1.c));
    assert_eq!(c, a.mul_elem(&b).unwrap());

    let (m0, m1) = tokio::join!(c0.matmul(1, 3, 4, 5), c1.matmul(1, 3, 4, 5));
    let (m0, m1) = (m0.unwrap(), m1.unwrap());
    let a = sum(&m0.a, &m1.a).reshape(&[3, 4]).unwrap();
    let b = sum(&m0.b, &m1.b).reshape(&[4, 5]).unwrap();
    let c = sum(&m0.c, &m1.c).reshape(&[3, 5]).unwrap();
    assert_eq!(c, a.matmul(&b).unwrap());

    c0.into_channel().close().await.unwrap();
    c1.into_channel().close().await.unwrap();
    // With --sessions 1 the dealer exits cleanly once the session is over.
    let mut dealer = dealer;
    let status = tokio::task::spawn_blocking(move || {
        let s = dealer.0.wait();
        (s, dealer)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "dealer exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
