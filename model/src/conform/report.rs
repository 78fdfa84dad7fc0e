//! The verdicts of a conformance check, and how they are printed.

use super::replay::{Divergence, Outcome};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// What `conform` found.
#[derive(Default)]
pub struct Report {
    pub dir: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub torn: Vec<PathBuf>,
    pub replicas: usize,
    pub clients: usize,
    pub recorded_steps: u64,
    /// Steps a crash voided (never durable, nothing released).
    pub void_steps: u64,
    /// Whether the model's own properties were evaluated on a full state at every step.
    pub exact: bool,
    /// Problems found in the traces before replaying.
    pub problems: Vec<String>,
    pub steps: u64,
    pub stutters: u64,
    pub crashes: u64,
    pub divergence: Option<Divergence>,
    /// The properties checked, and the first violation of each that failed.
    pub properties: Vec<&'static str>,
    pub violations: Vec<(&'static str, u64, String)>,
    /// `Sometimes` properties some replayed state satisfied (exact mode).
    pub examples: Vec<&'static str>,
    pub load_time: Duration,
    pub replay_time: Duration,
}

impl Report {
    pub(super) fn absorb(&mut self, outcome: Outcome) {
        self.steps = outcome.steps;
        self.stutters = outcome.stutters;
        self.crashes = outcome.crashes;
        self.divergence = outcome.divergence;
        self.violations = outcome.violations;
    }

    /// Whether the run conforms and every property held.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.divergence.is_none() && self.violations.is_empty()
    }

    /// Replayed steps per second.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.replay_time.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Traces: {} ({} files, {:.1} MB{}); {} replicas, {} clients",
            self.dir.display(),
            self.files,
            self.bytes as f64 / 1e6,
            if self.torn.is_empty() {
                String::new()
            } else {
                format!(", {} with a torn final record dropped", self.torn.len())
            },
            self.replicas,
            self.clients
        )?;
        writeln!(
            out,
            "Steps: {} recorded, {} voided by crashes; {} replayed ({} stutters, {} crashes) in {:.2} s ({:.0} steps/s), loading {:.2} s",
            self.recorded_steps,
            self.void_steps,
            self.steps,
            self.stutters,
            self.crashes,
            self.replay_time.as_secs_f64(),
            self.steps_per_second(),
            self.load_time.as_secs_f64()
        )?;
        writeln!(
            out,
            "Properties: {}",
            if self.exact {
                "the model's own, on the full model state after every step"
            } else {
                "incremental checks (the trace is above the exact limit)"
            }
        )?;
        for problem in &self.problems {
            writeln!(out, "  trace problem: {problem}")?;
        }
        match &self.divergence {
            None => writeln!(out, "  conformance: every step enabled in the model, with the recorded outputs and state digest")?,
            Some(d) => {
                writeln!(
                    out,
                    "  conformance: DIVERGES at replayed step {} (actor {}, its step {}, time {}): {}",
                    d.step, d.actor, d.seq, d.time, d.what
                )?;
                if let Some(recorded) = &d.recorded {
                    writeln!(out, "    recorded: {}", clip(recorded))?;
                }
                if let Some(model) = &d.model {
                    writeln!(out, "    model:    {}", clip(model))?;
                }
            }
        }
        let checked_through = self
            .divergence
            .as_ref()
            .map_or(self.steps, |d| d.step.saturating_sub(1));
        for property in &self.properties {
            match self.violations.iter().find(|(name, _, _)| name == property) {
                None => writeln!(out, "  {property}: holds ({checked_through} steps)")?,
                Some((_, step, why)) => writeln!(
                    out,
                    "  {property}: VIOLATED at replayed step {step}: {}",
                    clip(why)
                )?,
            }
        }
        for (name, step, why) in &self.violations {
            if !self.properties.contains(name) {
                writeln!(
                    out,
                    "  {name}: VIOLATED at replayed step {step}: {}",
                    clip(why)
                )?;
            }
        }
        if !self.examples.is_empty() {
            writeln!(out, "  examples seen: {}", self.examples.join("; "))?;
        }
        writeln!(
            out,
            "Verdict: {}",
            if self.passed() { "CONFORMS" } else { "FAILS" }
        )?;
        if !self.passed() {
            writeln!(
                out,
                "To see the steps that lead there in stateright's explorer: cargo run --release -p model -- explore --trace {}",
                self.dir.display()
            )?;
        }
        Ok(())
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 4000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}
