//! Error reporting and exit codes.
//!
//! Everything printed here has passed a PHI filter, because an error can carry what the user
//! typed or what a server sent:
//!
//! * runtime errors ([`report`]) are scrubbed by `phi`'s detector (type tags) before printing;
//! * command-line errors ([`command_line`]) are rebuilt from clap's structured context with only
//!   the parts that come from phigate's own definitions (argument names, valid values, usage,
//!   suggestions). The value the user gave is never repeated: a rejected `--patient` value or a
//!   misplaced positional argument is exactly where PHI gets typed by mistake.

use std::fmt::{self, Write as _};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// An error caused by how phigate was invoked or configured (exit code 2), as opposed to a
/// failure while doing the work (exit code 1). The message must say what is wrong and must not
/// contain PHI or secrets.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a usage error (exit code 2) with the given message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Prints the error chain to stderr, scrubbed of detected identifiers, and picks the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", scrub_message(&format!("{err:#}")));
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Messages are written by phigate's own code and should hold no PHI already; this is the
/// second line of defence for values that slipped into an error from a library or a server.
fn scrub_message(message: &str) -> String {
    phi::scrub(message, phi::Mode::Tag)
}

/// Handles a command-line parse error: help and version go to stdout as clap renders them;
/// every other error is rendered without the user's values, with exit code 2.
pub fn command_line(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        // Help printed because nothing was given: only phigate's own text.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    eprint!("{}", render_without_values(&err));
    ExitCode::from(2)
}

/// The text of a command-line error built only from phigate's own definitions.
pub fn render_without_values(err: &clap::Error) -> String {
    let defined_arg = match err.kind() {
        // For these two kinds clap's `InvalidArg`/`InvalidSubcommand` is what the user typed.
        ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand => None,
        _ => context_text(err, ContextKind::InvalidArg),
    };
    let mut out = String::from("error: ");
    let problem = match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => "invalid value",
        ErrorKind::UnknownArgument => "unexpected argument",
        ErrorKind::InvalidSubcommand => "unrecognized subcommand",
        ErrorKind::NoEquals => "equal sign is needed when assigning values",
        ErrorKind::TooManyValues => "too many values",
        ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => "wrong number of values",
        ErrorKind::ArgumentConflict => "arguments cannot be used together",
        ErrorKind::MissingRequiredArgument => "required arguments were not provided",
        ErrorKind::MissingSubcommand => "a subcommand is required",
        ErrorKind::InvalidUtf8 => "invalid UTF-8 in an argument",
        kind => kind.as_str().unwrap_or("invalid command line"),
    };
    out.push_str(problem);
    match (err.kind(), defined_arg) {
        (ErrorKind::MissingRequiredArgument, Some(args)) => {
            let _ = write!(out, ": {args}");
        }
        (ErrorKind::ArgumentConflict, Some(arg)) => {
            let _ = write!(out, ": '{arg}'");
            if let Some(prior) = context_text(err, ContextKind::PriorArg) {
                let _ = write!(out, " and '{prior}'");
            }
        }
        (_, Some(arg)) => {
            let _ = write!(out, " for '{arg}'");
        }
        (_, None) => {}
    }
    match err.kind() {
        ErrorKind::InvalidValue
        | ErrorKind::ValueValidation
        | ErrorKind::UnknownArgument
        | ErrorKind::InvalidSubcommand
        | ErrorKind::TooManyValues => {
            out.push_str(" (the value given is not repeated: it may hold PHI)");
        }
        _ => {}
    }
    out.push('\n');
    if let Some(valid) = context_text(err, ContextKind::ValidValue) {
        let _ = writeln!(out, "  [possible values: {valid}]");
    }
    if let Some(valid) = context_text(err, ContextKind::ValidSubcommand) {
        let _ = writeln!(out, "  [subcommands: {valid}]");
    }
    for kind in [
        ContextKind::SuggestedArg,
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedValue,
        ContextKind::SuggestedCommand,
    ] {
        if let Some(suggestion) = context_text(err, kind) {
            let _ = writeln!(out, "  tip: did you mean '{suggestion}'?");
        }
    }
    if let Some(usage) = context_text(err, ContextKind::Usage) {
        let _ = writeln!(out, "\n{usage}");
    }
    out.push_str("\nFor more information, try '--help'.\n");
    out
}

fn context_text(err: &clap::Error, kind: ContextKind) -> Option<String> {
    let text = match err.get(kind)? {
        ContextValue::String(s) => s.clone(),
        ContextValue::Strings(list) => list.join(", "),
        ContextValue::StyledStr(s) => s.to_string(),
        ContextValue::StyledStrs(list) => list
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        ContextValue::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::render_without_values;

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long)]
        patients: Option<u64>,
        #[arg(long, value_enum)]
        format: Option<Format>,
    }

    #[derive(Debug, Clone, Copy, clap::ValueEnum)]
    enum Format {
        Json,
        Csv,
    }

    fn rendered(args: &[&str]) -> String {
        let err = Demo::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
            .expect_err("the arguments are invalid");
        render_without_values(&err)
    }

    #[test]
    fn a_rejected_value_is_not_repeated_but_the_argument_is_named() {
        let text = rendered(&["--patients", "Zebulon-Quixote"]);
        assert!(!text.contains("Zebulon"), "{text}");
        assert!(
            text.contains("invalid value for '--patients <PATIENTS>'"),
            "{text}"
        );
    }

    #[test]
    fn valid_values_come_from_the_definition() {
        let text = rendered(&["--format", "Zebulon"]);
        assert!(!text.contains("Zebulon"), "{text}");
        assert!(text.contains("[possible values: json, csv]"), "{text}");
    }

    #[test]
    fn an_unexpected_positional_value_is_not_repeated() {
        let text = rendered(&["415-555-0142"]);
        assert!(!text.contains("415-555-0142"), "{text}");
        assert!(text.starts_with("error: unexpected argument"), "{text}");
        assert!(text.contains("Usage:"), "{text}");
    }

    #[test]
    fn a_misspelt_flag_gets_a_suggestion_from_the_definitions() {
        let text = rendered(&["--patiens", "3"]);
        assert!(!text.contains("patiens"), "{text}");
        assert!(text.contains("tip: did you mean '--patients'?"), "{text}");
    }

    #[test]
    fn runtime_errors_are_scrubbed_before_printing() {
        let text = super::scrub_message("no record for 415-555-0142 (zebulon.q@example.org)");
        assert!(!text.contains("415-555-0142"), "{text}");
        assert!(!text.contains("zebulon.q@example.org"), "{text}");
    }
}
