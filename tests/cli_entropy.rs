//! `privlm entropy` end to end: the built binary on the committed GPT-2 fixture and on seeded
//! random architectures (small shapes), and its refusals of bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2_tiny");

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Entropy measures how \
                    spread out the attention of each head is over the keys it can see.\n";

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn privlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privlm"))
        .args(args)
        .output()
        .expect("the privlm binary runs")
}

fn text_of(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Reads `entropy.json` and checks it holds `layers x heads` finite entropies; returns it.
fn check_report(out_dir: &Path, layers: usize, heads: usize) -> serde_json::Value {
    for f in ["entropy.json", "entropy.csv", "heatmap.png"] {
        let p = out_dir.join(f);
        assert!(p.is_file(), "{} was not written", p.display());
        assert!(std::fs::metadata(&p).unwrap().len() > 0, "{f} is empty");
    }
    let png = std::fs::read(out_dir.join("heatmap.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "heatmap.png is not a PNG");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("entropy.json")).unwrap())
            .unwrap();
    let stats = &json["stats"];
    assert_eq!(stats["layers"], layers);
    assert_eq!(stats["heads"], heads);
    let e = stats["entropy"].as_array().unwrap();
    assert_eq!(e.len(), layers * heads);
    for v in e {
        let v = v.as_f64().unwrap();
        assert!(v.is_finite() && v > -1e-6, "entropy {v}");
    }
    let csv = std::fs::read_to_string(out_dir.join("entropy.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + layers * heads,
        "CSV: header + one row per head"
    );
    json
}

#[test]
fn gpt2_fixture_produces_all_outputs() {
    let dir = tmp_dir("fixture");
    let text = dir.join("text.txt");
    std::fs::write(&text, TEXT).unwrap();
    let out_dir = dir.join("out");
    let out = privlm(&[
        "entropy",
        "--model",
        FIXTURE,
        "--text",
        s(&text),
        "--out",
        s(&out_dir),
    ]);
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The fixture: 2 layers, 4 heads, context 32, vocabulary 512 (byte ids with a note).
    let json = check_report(&out_dir, 2, 4);
    let n_bytes = TEXT.len();
    let full = n_bytes / 32;
    let tail = n_bytes % 32;
    let expected_windows = full + usize::from(tail * 2 >= 32);
    let lens = json["stats"]["seq_lens"].as_array().unwrap();
    assert_eq!(
        lens.len(),
        expected_windows,
        "one sequence per context window"
    );
    assert!(lens.iter().all(|t| t.as_u64().unwrap() <= 32));
    assert!(stdout.contains("exceed the context of 32"), "{stdout}");
    assert!(stdout.contains("using byte tokens"), "{stdout}");
    assert!(stdout.contains("layer |"), "table printed: {stdout}");
    assert!(stdout.contains("heatmap.png"), "{stdout}");

    // The library's entropies agree with the CLI's on the same windows.
    let model = privlm::model::Model::load(Path::new(FIXTURE)).unwrap();
    let tokens: Vec<u32> = TEXT.bytes().map(u32::from).collect();
    let mut acc = privlm::entropy::EntropyAccumulator::new(2, 4);
    for w in tokens.chunks(32).take(expected_windows) {
        let (_, attn) = model.forward_with_attention(w).unwrap();
        acc.add_sequence(&attn, w.len()).unwrap();
    }
    let stats = acc.finish().unwrap();
    let cli: Vec<f64> = json["stats"]["entropy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(cli, stats.entropy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn short_text_is_one_window() {
    let dir = tmp_dir("short");
    let text = dir.join("text.txt");
    std::fs::write(&text, "Hello, world!").unwrap();
    let out_dir = dir.join("out");
    let out = privlm(&[
        "entropy",
        "--model",
        FIXTURE,
        "--text",
        s(&text),
        "--out",
        s(&out_dir),
        "--tokenizer",
        "byte",
    ]);
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let json = check_report(&out_dir, 2, 4);
    assert_eq!(json["stats"]["seq_lens"], serde_json::json!([13]));
    assert!(!stdout.contains("exceed the context"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn random_architectures_run() {
    let dir = tmp_dir("random");
    let text = dir.join("text.txt");
    std::fs::write(&text, TEXT).unwrap();
    for (i, arch) in ["SM+LN+G", "SM+ScFuFFN", "SM(t)+ScFuFFN", "SM+R[1]"]
        .iter()
        .enumerate()
    {
        let out_dir = dir.join(format!("out{i}"));
        let out = privlm(&[
            "entropy",
            "--random-arch",
            arch,
            "--layers",
            "3",
            "--d-model",
            "16",
            "--heads",
            "2",
            "--ctx",
            "24",
            "--vocab",
            "256",
            "--seed",
            "7",
            "--text",
            s(&text),
            "--out",
            s(&out_dir),
        ]);
        let (stdout, stderr) = text_of(&out);
        assert!(out.status.success(), "{arch}: {stdout}\n{stderr}");
        assert!(stdout.contains(arch), "{arch} named: {stdout}");
        check_report(&out_dir, 3, 2);
    }
    // Seeded: the same seed gives the same report.
    let again = dir.join("again");
    let out = privlm(&[
        "entropy",
        "--random-arch",
        "SM+LN+G",
        "--layers",
        "3",
        "--d-model",
        "16",
        "--heads",
        "2",
        "--ctx",
        "24",
        "--vocab",
        "256",
        "--seed",
        "7",
        "--text",
        s(&text),
        "--out",
        s(&again),
    ]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(again.join("entropy.csv")).unwrap(),
        std::fs::read(dir.join("out0").join("entropy.csv")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_fails(args: &[&str], needle: &str) {
    let out = privlm(args);
    let (stdout, stderr) = text_of(&out);
    assert!(
        !out.status.success(),
        "{args:?} should fail; stdout:\n{stdout}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr should mention {needle:?}:\n{stderr}"
    );
}

#[test]
fn bad_inputs_are_refused_clearly() {
    let dir = tmp_dir("bad");
    let text = dir.join("text.txt");
    std::fs::write(&text, TEXT).unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = dir.join("out");

    let missing = dir.join("no-such-model");
    assert_fails(
        &["entropy", "--model", s(&missing), "--text", s(&text)],
        "does not exist",
    );
    assert_fails(
        &["entropy", "--model", FIXTURE, "--text", s(&empty)],
        "is empty",
    );
    assert_fails(
        &[
            "entropy",
            "--model",
            FIXTURE,
            "--text",
            s(&dir.join("missing.txt")),
        ],
        "missing.txt",
    );
    assert!(!out.exists(), "nothing written on failure");

    // A truncated checkpoint: the library's error names what is cut off.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(
        Path::new(FIXTURE).join("config.json"),
        broken.join("config.json"),
    )
    .unwrap();
    let st = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    assert_fails(
        &["entropy", "--model", s(&broken), "--text", s(&text)],
        "loading the model",
    );
    let (_, stderr) = text_of(&privlm(&[
        "entropy",
        "--model",
        s(&broken),
        "--text",
        s(&text),
    ]));
    assert!(
        stderr.contains("tensor") || stderr.contains("truncated"),
        "{stderr}"
    );

    // Usage errors.
    assert_fails(
        &["entropy", "--text", s(&text)],
        "--model DIR or --random-arch",
    );
    assert_fails(&["entropy", "--model", FIXTURE], "--text FILE is required");
    assert_fails(
        &["entropy", "--random-arch", "SM+XYZ", "--text", s(&text)],
        "unknown architecture",
    );
    assert_fails(
        &[
            "entropy",
            "--model",
            FIXTURE,
            "--layers",
            "3",
            "--text",
            s(&text),
        ],
        "only with --random-arch",
    );
    assert_fails(
        &[
            "entropy",
            "--random-arch",
            "SM+LN+G",
            "--d-model",
            "10",
            "--heads",
            "3",
            "--text",
            s(&text),
        ],
        "d_model",
    );
    assert_fails(&["frobnicate"], "unknown command");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_and_help_still_work() {
    // The demo itself runs in tests/cli_demo.rs; here its help.
    let out = privlm(&["help", "demo"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("loopback TLS"));
    let out = privlm(&["help", "entropy"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--random-arch"));
}

#[test]
fn the_model_directorys_tokenizer_is_used() {
    // The fixture plus a small byte-level BPE (the 256 bytes and the merge "t h" -> 256), as
    // Hugging Face's vocab.json + merges.txt: the text is tokenized with it, not by bytes.
    let dir = tmp_dir("tokdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(FIXTURE).join(f), dir.join(f)).unwrap();
    }
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xff).contains(&b) && b != 0xad;
    let mut next = 0x100;
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        vocab.insert(char::from_u32(c).unwrap().to_string(), b.into());
    }
    vocab.insert("th".into(), 256.into());
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::Value::Object(vocab).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\nt h\n").unwrap();
    let text = tmp_dir("tokdir-text").join("t.txt");
    std::fs::write(&text, "the thin thread").unwrap();
    let out_dir = tmp_dir("tokdir-out");
    let out = privlm(&[
        "entropy",
        "--model",
        s(&dir),
        "--text",
        s(&text),
        "--out",
        s(&out_dir),
    ]);
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tokenizer: vocab.json + merges.txt"),
        "{stdout}"
    );
    // 15 bytes, three "th" merged: 12 tokens.
    assert!(stdout.contains("text: 12 tokens"), "{stdout}");
    check_report(&out_dir, 2, 4);

    // Half a tokenizer is an error naming the missing file, not a silent fallback.
    std::fs::remove_file(dir.join("merges.txt")).unwrap();
    let out = privlm(&["entropy", "--model", s(&dir), "--text", s(&text)]);
    let (stdout, stderr) = text_of(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("merges.txt"), "{stdout}\n{stderr}");
}
