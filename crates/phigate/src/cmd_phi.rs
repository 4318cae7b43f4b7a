//! `phigate phi`: PHI detection, scrubbing, de-identification and the detector's evaluation.
//!
//! * `eval`: precision, recall and F2 per identifier kind on generated notes and, separately,
//!   on the hand-written fixtures; `--dump FILE` writes the generated corpus as JSON lines.
//! * `bench --input FILE`: detection throughput and scores on a dumped corpus (used by
//!   `bench/phi_vs_presidio.sh`).
//! * `scrub [FILE]`: free text in (file or stdin, any bytes), scrubbed text out.
//! * `detect [FILE]`: the spans found, as JSON lines of offsets and kinds (never the text).
//! * `deid [FILE]`: a JSON document de-identified with the default Kipu policy.
//!
//! Pseudonyms and date shifts need a key: `PHIGATE_PHI_KEY`, hex, at least 32 bytes. It is read
//! here (the binary is the only place that reads the environment) and never printed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use phi::deid::{Policy, deidentify_json};
use phi::eval::{self, Report};
use phi::{Detector, Mode, PseudonymKey, Sensitive};

/// Arguments of `phigate phi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Score the detectors on generated and hand-written labelled notes.
    Eval(EvalArgs),
    /// Measure detection throughput and scores on a corpus written by `eval --dump`.
    Bench(BenchArgs),
    /// Replace identifiers in free text (a file, or stdin) and print the result.
    Scrub(ScrubArgs),
    /// Print the identifiers found in free text as JSON lines of offsets and kinds.
    Detect(InputArgs),
    /// De-identify a JSON document (a Kipu record or response) with the default Kipu policy.
    Deid(DeidArgs),
    /// Test-only: panic with the given message (exercises the scrubbing panic hook). Refused
    /// unless PHIGATE_ALLOW_TEST_PANIC=1.
    #[command(hide = true)]
    PanicTest {
        /// The panic message.
        message: String,
    },
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Number of generated notes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    notes: u32,
    /// Generator seed.
    #[arg(long, default_value_t = 20_261_123)]
    seed: u64,
    /// Also write the generated corpus to FILE as JSON lines ({"text", "spans"}).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// Also write the hand-written fixtures to FILE in the same format (byte offsets; they are
    /// not all ASCII).
    #[arg(long, value_name = "FILE")]
    dump_handwritten: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// A corpus written by `phigate phi eval --dump`.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Passes over the corpus (the throughput is the median pass).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    passes: u32,
}

#[derive(Debug, clap::Args)]
struct InputArgs {
    /// The file to read; stdin when absent or "-". Invalid UTF-8 is replaced with U+FFFD.
    file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScrubMode {
    /// `*****`.
    Mask,
    /// `[PHONE]`, `[NAME]`, ...
    Tag,
    /// Keyed pseudonyms (needs PHIGATE_PHI_KEY).
    Pseudonym,
}

#[derive(Debug, clap::Args)]
struct ScrubArgs {
    #[command(flatten)]
    input: InputArgs,
    /// How identifiers are replaced.
    #[arg(long, value_enum, default_value_t = ScrubMode::Tag)]
    mode: ScrubMode,
}

#[derive(Debug, clap::Args)]
struct DeidArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Shift dates per patient instead of keeping only the year (needs PHIGATE_PHI_KEY).
    #[arg(long)]
    date_shift: bool,
    /// The day ages are computed on (YYYY-MM-DD; default today, UTC).
    #[arg(long, value_name = "DATE")]
    reference_date: Option<String>,
}

/// Runs `phigate phi`.
pub fn run(args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    match args.command {
        Command::Eval(a) => run_eval(a),
        Command::Bench(a) => run_bench(a),
        Command::Scrub(a) => run_scrub(a),
        Command::Detect(a) => run_detect(a),
        Command::Deid(a) => run_deid(a),
        Command::PanicTest { message } => {
            if std::env::var("PHIGATE_ALLOW_TEST_PANIC").as_deref() != Ok("1") {
                return Err(crate::exit::usage(
                    "phi panic-test is a test hook; set PHIGATE_ALLOW_TEST_PANIC=1",
                ));
            }
            panic!("test panic requested: {message}");
        }
    }
}

fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let detector = Detector::global();
    let notes = eval::generate(a.notes as usize, a.seed);
    if let Some(path) = &a.dump {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for note in &notes {
            writeln!(out, "{}", eval::to_json_line(note))?;
        }
        out.flush()?;
        tracing::info!(count = notes.len(), "corpus written");
    }
    if let Some(path) = &a.dump_handwritten {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for note in &eval::handwritten() {
            writeln!(out, "{}", eval::to_json_line(note))?;
        }
        out.flush()?;
    }
    let synthetic = eval::evaluate(detector, &notes);
    let handwritten = eval::evaluate(detector, &eval::handwritten());
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let doc = serde_json::json!({
            "seed": a.seed,
            "synthetic": report_json(&synthetic),
            "handwritten": report_json(&handwritten),
        });
        writeln!(stdout, "{doc}")?;
    } else {
        writeln!(
            stdout,
            "Synthetic notes: {} notes, {} bytes, seed {}",
            synthetic.notes, synthetic.bytes, a.seed
        )?;
        writeln!(
            stdout,
            "(generator and detector share an author: see the hand-written figures below)"
        )?;
        writeln!(stdout, "{synthetic}\n")?;
        writeln!(
            stdout,
            "Hand-written notes (different style): {} notes, {} bytes",
            handwritten.notes, handwritten.bytes
        )?;
        writeln!(stdout, "{handwritten}")?;
    }
    Ok(())
}

fn report_json(r: &Report) -> serde_json::Value {
    let row = |c: &eval::Counts| {
        serde_json::json!({
            "gold": c.gold, "predicted": c.predicted,
            "precision": c.precision(), "recall": c.recall(), "f2": c.f2(),
        })
    };
    let per: serde_json::Map<String, serde_json::Value> = r
        .per_kind
        .iter()
        .map(|(k, c)| (k.tag().to_string(), row(c)))
        .collect();
    serde_json::json!({"notes": r.notes, "bytes": r.bytes, "per_kind": per, "overall": row(&r.overall)})
}

fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.input)
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    let mut notes = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let note = eval::from_json_line(line).ok_or_else(|| {
            crate::exit::usage(format!(
                "{}: line {} is not a corpus line ({{\"text\", \"spans\": [{{\"start\", \"end\", \"type\"}}]}})",
                a.input.display(),
                i + 1
            ))
        })?;
        notes.push(note);
    }
    let detector = Detector::global();
    let bytes: usize = notes.iter().map(|n| n.text.len()).sum();
    let mut passes = Vec::new();
    let mut predictions = Vec::new();
    for _ in 0..a.passes {
        let started = Instant::now();
        predictions = notes.iter().map(|n| detector.detect(&n.text)).collect();
        passes.push(started.elapsed().as_secs_f64());
    }
    passes.sort_by(f64::total_cmp);
    let median = passes[passes.len() / 2];
    let report = eval::score(&notes, &predictions);
    let doc = serde_json::json!({
        "tool": "phigate",
        "notes": notes.len(),
        "bytes": bytes,
        "seconds": median,
        "mb_per_s": bytes as f64 / 1e6 / median,
        "overall": {
            "precision": report.overall.precision(),
            "recall": report.overall.recall(),
            "f2": report.overall.f2(),
        },
    });
    writeln!(std::io::stdout().lock(), "{doc}")?;
    Ok(())
}

fn read_input(input: &InputArgs) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match input.file.as_deref() {
        None => std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?,
        Some(p) if p == Path::new("-") => std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?,
        Some(p) => {
            // The path is the user's own argument; echoing it back is not a disclosure.
            buf = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            buf.len()
        }
    };
    Ok(buf)
}

/// `PHIGATE_PHI_KEY` as a pseudonym key, or a usage error saying what is wrong.
fn key_from_env() -> anyhow::Result<PseudonymKey> {
    let hex_key = std::env::var("PHIGATE_PHI_KEY").map_err(|_| {
        crate::exit::usage("this mode needs PHIGATE_PHI_KEY (hex, at least 32 bytes)")
    })?;
    let bytes = Sensitive::new(
        hex::decode(hex_key.trim())
            .map_err(|_| crate::exit::usage("PHIGATE_PHI_KEY is not hex"))?,
    );
    PseudonymKey::new(bytes.expose())
        .map_err(|e| crate::exit::usage(format!("PHIGATE_PHI_KEY: {e}")))
}

fn run_scrub(a: ScrubArgs) -> anyhow::Result<()> {
    let key = match a.mode {
        ScrubMode::Pseudonym => Some(key_from_env()?),
        _ => None,
    };
    let input = read_input(&a.input)?;
    let (text, spans) = Detector::global().detect_bytes(&input);
    if matches!(text, std::borrow::Cow::Owned(_)) {
        tracing::warn!("input is not valid UTF-8; invalid bytes were replaced with U+FFFD");
    }
    tracing::trace!(input = ?Sensitive::new(&text), "scrubbing input");
    for s in &spans {
        tracing::debug!(kind = %s.kind, detector = s.detector, start = s.start, end = s.end, "identifier found");
    }
    let mode = match (&a.mode, &key) {
        (ScrubMode::Mask, _) => Mode::Mask,
        (ScrubMode::Tag, _) => Mode::Tag,
        (ScrubMode::Pseudonym, Some(k)) => Mode::Pseudonym(k),
        (ScrubMode::Pseudonym, None) => unreachable!("the key was read above"),
    };
    let out = phi::redact(&text, &spans, mode);
    std::io::stdout().lock().write_all(out.as_bytes())?;
    tracing::info!(count = spans.len(), bytes = input.len(), "scrubbed");
    Ok(())
}

fn run_detect(a: InputArgs) -> anyhow::Result<()> {
    let input = read_input(&a)?;
    let (_, spans) = Detector::global().detect_bytes(&input);
    let mut out = std::io::stdout().lock();
    for s in spans {
        let line = serde_json::json!({
            "start": s.start, "end": s.end, "type": s.kind.tag(),
            "confidence": s.confidence, "detector": s.detector,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn run_deid(a: DeidArgs) -> anyhow::Result<()> {
    let reference = match &a.reference_date {
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| crate::exit::usage("--reference-date must be YYYY-MM-DD"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let mut policy = Policy::kipu_default(reference);
    if let Ok(key) = key_from_env() {
        policy = policy.with_key(key);
    }
    if a.date_shift {
        policy = policy.with_date_shift().map_err(|_| {
            crate::exit::usage("--date-shift needs PHIGATE_PHI_KEY (hex, at least 32 bytes)")
        })?;
    }
    let input = read_input(&a.input)?;
    // serde_json's messages quote no input, only line and column.
    let value: serde_json::Value = serde_json::from_slice(&input).map_err(|e| {
        crate::exit::usage(format!(
            "input is not JSON: line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let out = deidentify_json(&value, &policy)?;
    writeln!(std::io::stdout().lock(), "{out}")?;
    Ok(())
}
