//! The client's cost table: per layer, bytes each way on the client-server link, bytes from
//! the dealer and rounds, with setup (one-time: masked weights), preprocessing (correlations
//! fetched ahead) and online apart, then totals and the seconds of each phase.
//!
//! The rows group the engine's labels by their first component (`control`, `handshake`,
//! `embedding`, `layer0`, ..., `head`). Counts are the client's: "c→s" is what the client
//! sent, "s→c" what it received; "dealer" is what the dealer sent it. Rounds are the
//! client's send flights on the peer link; "seconds" the online time of the group's stages as
//! the engine measured it (summed over the forward passes).

use privlm_protocols::channel::{Counters, Phase};

use super::client::Generation;
use crate::secure::CostReport;

/// Bytes in a short human form (B, kB, MB, GB; powers of 1000).
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b < 1e3 {
        format!("{b:.0} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.2} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

/// One row of the table: per phase, the peer and dealer counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// The group (`layer0`, `head`, ...).
    pub group: String,
    /// Setup: peer, dealer.
    pub setup: (Counters, Counters),
    /// Preprocessing: peer, dealer.
    pub preprocessing: (Counters, Counters),
    /// Online: peer, dealer.
    pub online: (Counters, Counters),
    /// Online seconds (the engine's per-stage times of this group).
    pub online_seconds: f64,
}

impl Row {
    fn phase_mut(&mut self, p: Phase) -> &mut (Counters, Counters) {
        match p {
            Phase::Setup => &mut self.setup,
            Phase::Preprocessing => &mut self.preprocessing,
            _ => &mut self.online,
        }
    }
}

/// The report's counters grouped by layer (first label component), in first-seen order,
/// followed by nothing else (totals: [`CostReport::total`]).
pub fn rows(r: &CostReport) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for e in &r.entries {
        let g = e.label.split('/').next().unwrap_or("");
        let g = if g.is_empty() { "(pairing)" } else { g };
        if e.peer == Counters::default() && e.dealer == Counters::default() {
            continue;
        }
        let i = match out.iter().position(|row| row.group == g) {
            Some(i) => i,
            None => {
                out.push(Row {
                    group: g.to_string(),
                    ..Row::default()
                });
                out.len() - 1
            }
        };
        let slot = out[i].phase_mut(e.phase);
        slot.0.accumulate(&e.peer);
        slot.1.accumulate(&e.dealer);
    }
    for (stage, secs) in &r.stage_seconds {
        let g = stage.split('/').next().unwrap_or("");
        if let Some(row) = out.iter_mut().find(|row| row.group == g) {
            row.online_seconds += secs;
        }
    }
    // Layers in numeric order, after the embedding, before the head.
    let rank = |g: &str| -> (u8, usize) {
        match g {
            "(pairing)" | "control" | "handshake" => (0, 0),
            "embedding" => (1, 0),
            "head" => (3, 0),
            _ => match g.strip_prefix("layer").and_then(|n| n.parse().ok()) {
                Some(n) => (2, n),
                None => (4, 0),
            },
        }
    };
    out.sort_by_key(|row| rank(&row.group));
    out
}

fn line(name: &str, r: &Row) -> String {
    let h = human_bytes;
    format!(
        "{:<11} {:>10} {:>10} {:>10} | {:>10} | {:>10} {:>10} {:>10} {:>7} {:>8.3}\n",
        name,
        h(r.setup.0.bytes_sent),
        h(r.setup.0.bytes_recv),
        h(r.setup.1.bytes_recv),
        h(r.preprocessing.1.bytes_recv + r.preprocessing.0.bytes_recv),
        h(r.online.0.bytes_sent),
        h(r.online.0.bytes_recv),
        h(r.online.1.bytes_recv),
        r.online.0.rounds,
        r.online_seconds,
    )
}

/// The cost table of a report (see the module docs).
pub fn report_table(r: &CostReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<11} {:>32} | {:>10} | {:>56}\n",
        "", "setup (once per session)", "preproc.", "online"
    ));
    s.push_str(&format!(
        "{:<11} {:>10} {:>10} {:>10} | {:>10} | {:>10} {:>10} {:>10} {:>7} {:>8}\n",
        "layer", "c→s", "s→c", "dealer", "dealer", "c→s", "s→c", "dealer", "rounds", "seconds"
    ));
    s.push_str(&"-".repeat(111));
    s.push('\n');
    let mut total = Row::default();
    for row in rows(r) {
        s.push_str(&line(&row.group, &row));
        for (t, x) in [
            (&mut total.setup, &row.setup),
            (&mut total.preprocessing, &row.preprocessing),
            (&mut total.online, &row.online),
        ] {
            t.0.accumulate(&x.0);
            t.1.accumulate(&x.1);
        }
        total.online_seconds += row.online_seconds;
    }
    s.push_str(&"-".repeat(111));
    s.push('\n');
    s.push_str(&line("total", &total));
    let all = r.total(None);
    let passes = r.pass_seconds.len().max(1);
    s.push_str(&format!(
        "all phases: {} client→server, {} server→client, {} from the dealer, {} rounds\n",
        human_bytes(all.0.bytes_sent),
        human_bytes(all.0.bytes_recv),
        human_bytes(all.1.bytes_recv),
        all.0.rounds
    ));
    s.push_str(&format!(
        "seconds: setup {:.2}, preprocessing {:.2}, online {:.2} ({:.3} per forward pass, \
         {} passes), planning {:.2}\n",
        r.setup_seconds,
        r.preprocessing_seconds,
        r.online_seconds,
        r.online_seconds / passes as f64,
        r.pass_seconds.len(),
        r.planning_seconds
    ));
    s
}

/// The whole cost section `privlm-client` prints after the text.
pub fn cost_table(g: &Generation) -> String {
    format!(
        "cost of the private generation ({} prompt tokens, {} generated; model `{}`, {}):\n{}\
         wall time: {:.2} s to connect, agree and pair at the dealer, {:.2} s to generate\n",
        g.prompt_tokens.len(),
        g.tokens.len(),
        g.model,
        g.architecture,
        report_table(&g.cost),
        g.setup_seconds,
        g.generation_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::CostEntry;

    fn c(sent: u64, recv: u64, rounds: u64) -> Counters {
        Counters {
            bytes_sent: sent,
            bytes_recv: recv,
            rounds,
            ..Counters::default()
        }
    }

    #[test]
    fn rows_group_by_layer_in_order() {
        let e = |phase, label: &str, peer, dealer| CostEntry {
            phase,
            label: label.into(),
            peer,
            dealer,
        };
        let r = CostReport {
            entries: vec![
                e(
                    Phase::Online,
                    "layer10/attn/softmax",
                    c(5, 6, 1),
                    c(0, 7, 0),
                ),
                e(Phase::Online, "head/argmax", c(1, 1, 1), c(0, 0, 0)),
                e(
                    Phase::Setup,
                    "layer2/attn/setup_weight",
                    c(0, 100, 1),
                    c(0, 3, 0),
                ),
                e(Phase::Online, "layer2/attn/softmax", c(5, 6, 2), c(0, 7, 0)),
                e(Phase::Online, "layer2/ffn/gelu", c(1, 1, 1), c(0, 1, 0)),
                e(
                    Phase::Preprocessing,
                    "layer2/ffn/gelu",
                    c(0, 0, 0),
                    c(0, 50, 0),
                ),
                e(Phase::Online, "embedding/lookup", c(1, 1, 1), c(0, 0, 0)),
            ],
            stage_seconds: vec![("layer2/attn".into(), 0.5), ("layer2/ffn".into(), 0.25)],
            ..CostReport::default()
        };
        let rows = rows(&r);
        let names: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(names, ["embedding", "layer2", "layer10", "head"]);
        assert_eq!(rows[1].online.0, {
            let mut x = c(5, 6, 2);
            x.accumulate(&c(1, 1, 1));
            x
        });
        assert_eq!(rows[1].preprocessing.1.bytes_recv, 50);
        assert_eq!(rows[1].setup.0.bytes_recv, 100);
        assert_eq!(rows[1].online_seconds, 0.75);
        let t = report_table(&r);
        assert!(t.contains("layer10") && t.contains("total"), "{t}");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(2_500_000), "2.50 MB");
    }
}
