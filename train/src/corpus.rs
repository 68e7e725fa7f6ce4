//! The training corpus: a directory of text files, split into train and held-out by file,
//! tokenized to one token stream per split.
//!
//! Files are found recursively by extension (directories named in `exclude` are skipped, e.g.
//! `site-packages` inside a Python installation), sorted by path, and assigned to the held-out
//! split by a seeded hash of their relative path, so the split does not depend on the order
//! the file system lists them in and a file is never in both splits. Each split's files are
//! concatenated, separated by a newline (byte tokens) or GPT-2's `<|endoftext|>` (BPE).

use std::path::{Path, PathBuf};

use privlm::model::tokenizer::TokenizerKind;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Errors reading or splitting a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The corpus is too small for the requested split or context.
    #[error("corpus: {0}")]
    TooSmall(String),
}

/// How to read a corpus directory.
#[derive(Clone, Debug)]
pub struct CorpusSpec {
    /// The root directory.
    pub dir: PathBuf,
    /// File extension without the dot (`py`); empty = every file.
    pub ext: String,
    /// Directory names skipped anywhere below the root.
    pub exclude: Vec<String>,
    /// Fraction of files held out (0 < f < 1).
    pub heldout_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// The tokenizer.
    pub tokenizer: TokenizerKind,
    /// Stop reading after this many bytes in total (0 = no limit); files are read in sorted order.
    pub max_bytes: u64,
}

/// A tokenized corpus.
pub struct Corpus {
    /// Training tokens (all training files, concatenated).
    pub train: Vec<u32>,
    /// Held-out tokens.
    pub heldout: Vec<u32>,
    /// Number of training files.
    pub train_files: usize,
    /// Number of held-out files.
    pub heldout_files: usize,
    /// Bytes read in total.
    pub bytes: u64,
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
}

fn walk(
    dir: &Path,
    ext: &str,
    exclude: &[String],
    out: &mut Vec<PathBuf>,
) -> Result<(), CorpusError> {
    let io = |source| CorpusError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io)?;
        if ft.is_dir() {
            let name = entry.file_name();
            if !exclude.iter().any(|x| name.to_string_lossy() == *x) {
                walk(&path, ext, exclude, out)?;
            }
        } else if ft.is_file()
            && (ext.is_empty() || path.extension().is_some_and(|e| e.to_string_lossy() == ext))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// FNV-1a over the bytes of `s`, mixed with `seed`: a stable per-file number in [0, 1).
fn split_hash(s: &str, seed: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (splitmix64) so that nearby paths spread.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Corpus {
    /// Reads, splits and tokenizes a corpus directory.
    pub fn load(spec: &CorpusSpec) -> Result<Self, CorpusError> {
        let mut files = Vec::new();
        walk(&spec.dir, &spec.ext, &spec.exclude, &mut files)?;
        files.sort();
        if files.len() < 2 {
            return Err(CorpusError::TooSmall(format!(
                "{} has {} file(s) with extension {:?}; at least 2 are needed (one per split)",
                spec.dir.display(),
                files.len(),
                spec.ext
            )));
        }
        let tok = spec.tokenizer.build();
        let sep: Vec<u32> = match tok.eot_token() {
            Some(eot) => vec![eot],
            None => tok.encode("\n"),
        };
        let (mut train, mut heldout) = (Vec::new(), Vec::new());
        let (mut train_files, mut heldout_files, mut bytes) = (0, 0, 0u64);
        let n = files.len();
        for (i, path) in files.iter().enumerate() {
            if spec.max_bytes > 0 && bytes >= spec.max_bytes {
                break;
            }
            let data = std::fs::read(path).map_err(|source| CorpusError::Io {
                path: path.clone(),
                source,
            })?;
            bytes += data.len() as u64;
            let text = String::from_utf8_lossy(&data);
            let rel = path.strip_prefix(&spec.dir).unwrap_or(path);
            // The last file goes to whichever split is still empty, so both get one.
            let held = if i + 1 == n && heldout_files == 0 {
                true
            } else if i + 1 == n && train_files == 0 {
                false
            } else {
                split_hash(&rel.to_string_lossy(), spec.seed) < spec.heldout_fraction
            };
            let (dst, count) = if held {
                (&mut heldout, &mut heldout_files)
            } else {
                (&mut train, &mut train_files)
            };
            if !dst.is_empty() {
                dst.extend_from_slice(&sep);
            }
            dst.extend(tok.encode(&text));
            *count += 1;
        }
        if train_files == 0 || heldout_files == 0 {
            return Err(CorpusError::TooSmall(format!(
                "the split left {train_files} training and {heldout_files} held-out files; \
                 raise --max-bytes or change --heldout-fraction"
            )));
        }
        Ok(Corpus {
            train,
            heldout,
            train_files,
            heldout_files,
            bytes,
            vocab_size: tok.vocab_size(),
        })
    }

    /// A corpus from token streams (tests).
    pub fn from_tokens(train: Vec<u32>, heldout: Vec<u32>, vocab_size: usize) -> Self {
        Corpus {
            train,
            heldout,
            train_files: 1,
            heldout_files: 1,
            bytes: 0,
            vocab_size,
        }
    }

    /// Checks that both splits hold at least one window of `ctx + 1` tokens.
    pub fn check_context(&self, ctx: usize) -> Result<(), CorpusError> {
        for (name, s) in [("training", &self.train), ("held-out", &self.heldout)] {
            if s.len() < ctx + 1 {
                return Err(CorpusError::TooSmall(format!(
                    "the {name} split has {} tokens, fewer than one window of context + 1 = {}",
                    s.len(),
                    ctx + 1
                )));
            }
        }
        Ok(())
    }
}

/// A batch of `batch` windows: inputs and next-token targets, each `batch × ctx` row-major.
pub struct Batch {
    /// Input tokens.
    pub inputs: Vec<u32>,
    /// Target tokens (inputs shifted by one).
    pub targets: Vec<u32>,
    /// Windows in the batch.
    pub batch: usize,
    /// Window length.
    pub ctx: usize,
}

/// The training batch of optimizer step `step`: `batch` windows at random offsets drawn from
/// a generator seeded by `(seed, step)`, so a resumed run sees the same batches.
pub fn train_batch(tokens: &[u32], batch: usize, ctx: usize, seed: u64, step: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let span = (tokens.len() - ctx) as u64; // offsets 0 ..= len - ctx - 1
    let mut inputs = Vec::with_capacity(batch * ctx);
    let mut targets = Vec::with_capacity(batch * ctx);
    for _ in 0..batch {
        let o = (rng.next_u64() % span) as usize;
        inputs.extend_from_slice(&tokens[o..o + ctx]);
        targets.extend_from_slice(&tokens[o + 1..o + ctx + 1]);
    }
    Batch {
        inputs,
        targets,
        batch,
        ctx,
    }
}

/// Up to `n` held-out windows spread evenly over the held-out stream (fixed for a run),
/// grouped into batches of at most `batch`.
pub fn eval_batches(tokens: &[u32], n: usize, batch: usize, ctx: usize) -> Vec<Batch> {
    let span = tokens.len() - ctx; // number of valid offsets
    let n = n.clamp(1, span);
    let offsets: Vec<usize> = (0..n).map(|i| i * span / n).collect();
    offsets
        .chunks(batch.max(1))
        .map(|chunk| {
            let mut inputs = Vec::with_capacity(chunk.len() * ctx);
            let mut targets = Vec::with_capacity(chunk.len() * ctx);
            for &o in chunk {
                inputs.extend_from_slice(&tokens[o..o + ctx]);
                targets.extend_from_slice(&tokens[o + 1..o + ctx + 1]);
            }
            Batch {
                inputs,
                targets,
                batch: chunk.len(),
                ctx,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_by_file_and_seeded() {
        let dir = std::env::temp_dir().join(format!("privlm-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pkg/site-packages")).unwrap();
        for i in 0..20 {
            std::fs::write(dir.join(format!("pkg/m{i}.py")), format!("x = {i}\n")).unwrap();
        }
        std::fs::write(dir.join("pkg/site-packages/skip.py"), "skipped\n").unwrap();
        std::fs::write(dir.join("pkg/notes.txt"), "not python\n").unwrap();
        let spec = CorpusSpec {
            dir: dir.clone(),
            ext: "py".into(),
            exclude: vec!["site-packages".into()],
            heldout_fraction: 0.25,
            seed: 7,
            tokenizer: TokenizerKind::Byte,
            max_bytes: 0,
        };
        let c = Corpus::load(&spec).unwrap();
        assert_eq!(c.train_files + c.heldout_files, 20);
        assert!(c.heldout_files >= 1 && c.train_files >= 1);
        let all: String = c
            .train
            .iter()
            .chain(&c.heldout)
            .map(|&t| t as u8 as char)
            .collect();
        assert!(!all.contains("skipped") && !all.contains("not python"));
        let again = Corpus::load(&spec).unwrap();
        assert_eq!(again.heldout, c.heldout);
        // GPT-2 BPE: same split, files separated by <|endoftext|>.
        let bpe = Corpus::load(&CorpusSpec {
            tokenizer: TokenizerKind::Gpt2,
            ..spec.clone()
        })
        .unwrap();
        assert_eq!(bpe.vocab_size, 50257);
        assert_eq!(bpe.heldout_files, c.heldout_files);
        let eot = privlm::model::tokenizer::GPT2_EOT_TOKEN;
        assert_eq!(
            bpe.train.iter().filter(|&&t| t == eot).count(),
            bpe.train_files - 1
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_are_windows_with_shifted_targets() {
        let toks: Vec<u32> = (0..100).collect();
        let b = train_batch(&toks, 3, 8, 1, 5);
        for w in 0..3 {
            let i = &b.inputs[w * 8..w * 8 + 8];
            let t = &b.targets[w * 8..w * 8 + 8];
            for k in 0..8 {
                assert_eq!(t[k], i[k] + 1);
            }
        }
        assert_eq!(train_batch(&toks, 3, 8, 1, 5).inputs, b.inputs);
        assert_ne!(train_batch(&toks, 3, 8, 1, 6).inputs, b.inputs);
        let e = eval_batches(&toks, 5, 2, 8);
        assert_eq!(e.iter().map(|b| b.batch).sum::<usize>(), 5);
    }
}
