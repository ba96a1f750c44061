//! Limits on YAML files read from users (DAG files, MLproject files): their size and kind of
//! file, checked before they are read, and their nesting, checked in time linear in the text
//! before the text is loaded.
//!
//! The YAML loader's scanner (libyaml) spends time proportional to the depth of nested flow
//! collections (`[[[[…`) on every token, so a small file nested 100,000 deep would take
//! minutes. A second, pure-Rust YAML parser reads the events first and stops at
//! [`MAX_NESTING`] levels, refusing such a file in milliseconds; the loader then only ever sees
//! texts nested at most that deep.

use std::io::Read;
use std::path::Path;

use saphyr_parser::{Event, Marker, Parser};

/// Largest DAG or MLproject file read, in bytes (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A FIFO, device, socket or directory: reading it could block or never end.
    #[error("not a regular file (a {kind})")]
    NotAFile {
        /// What it is instead.
        kind: &'static str,
    },
    /// More than [`MAX_FILE_BYTES`].
    #[error("larger than {} MiB (the limit for a YAML file)", MAX_FILE_BYTES / 1024 / 1024)]
    TooLarge,
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the regular file at `path`, at most [`MAX_FILE_BYTES`] long; refuses anything else
/// before opening it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotAFile { kind: kind_name(&kind) });
    }
    read_all(std::fs::File::open(path)?)
}

/// Reads `reader` to its end, refusing more than [`MAX_FILE_BYTES`].
pub fn read_all(reader: impl Read) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Most levels of lists and maps inside one another in a DAG or MLproject file (the file's
/// top-level map is level 1).
pub const MAX_NESTING: usize = 64;

/// A 1-based line and column (in characters) in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    fn of(mark: &Marker) -> Self {
        Position { line: mark.line(), column: mark.col() + 1 }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What a pass over a YAML text's events found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Well formed and nested at most [`MAX_NESTING`] deep.
    Fine,
    /// The list or map at this position is nested deeper than [`MAX_NESTING`].
    TooDeep(Position),
    /// Not valid YAML: the first problem, at its position.
    Invalid(Position, String),
}

impl Scan {
    /// Whether the YAML loader may be given the text: always when it is [`Scan::Fine`]; when it is
    /// [`Scan::Invalid`] (the loader then finds the error in its own words), only when the text
    /// holds so few `[` and `{` that no flow nesting can be deep, since the two parsers may
    /// disagree about where an invalid text goes wrong.
    pub fn loadable(&self, text: &str) -> bool {
        match self {
            Scan::Fine => true,
            Scan::TooDeep(_) => false,
            Scan::Invalid(..) => text.bytes().filter(|b| matches!(b, b'[' | b'{')).count() <= MAX_NESTING,
        }
    }
}

/// Reads `text`'s events up to the first problem, in time linear in the text.
pub fn scan(text: &str) -> Scan {
    match scan_events(text) {
        // The parser's scanner reads ahead of the events and stops at 255 levels of `[`/`{`;
        // the events of the text before that point place the level beyond the limit.
        (Scan::Invalid(at, _), Some(index)) => {
            let end = text.char_indices().nth(index).map_or(text.len(), |(byte, _)| byte);
            match scan_events(&text[..end]).0 {
                too_deep @ Scan::TooDeep(_) => too_deep,
                _ => Scan::TooDeep(at),
            }
        }
        (scanned, _) => scanned,
    }
}

/// [`scan`], and the character index where the parser's own nesting limit stopped it.
fn scan_events(text: &str) -> (Scan, Option<usize>) {
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(event) => event,
            Err(error) => {
                let too_deep = (error.info() == "recursion limit exceeded").then(|| error.marker().index());
                return (Scan::Invalid(Position::of(error.marker()), error.info().to_string()), too_deep);
            }
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return (Scan::TooDeep(Position::of(&span.start)), None);
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => break,
            _ => {}
        }
    }
    (Scan::Fine, None)
}

/// The message for [`Scan::TooDeep`].
pub fn too_deep_message() -> String {
    format!("lists and maps nested more than {MAX_NESTING} levels deep (the limit for a YAML file)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("a: {}{}\n", "[".repeat(depth - 1), "]".repeat(depth - 1))
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine_and_one_more_is_refused_where_it_starts() {
        assert_eq!(scan(&nested(MAX_NESTING)), Scan::Fine);
        assert_eq!(scan(&nested(MAX_NESTING + 1)), Scan::TooDeep(Position { line: 1, column: 4 + MAX_NESTING - 1 }));
        let block = format!("a:\n  {}x\n", "- ".repeat(MAX_NESTING));
        assert_eq!(scan(&block), Scan::TooDeep(Position { line: 2, column: 3 + 2 * (MAX_NESTING - 1) }));
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_at_the_first_level_too_many() {
        let text = format!("name: x\nstages: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(scan(&text), Scan::TooDeep(Position { line: 2, column: 9 + MAX_NESTING - 1 }));
    }

    #[test]
    fn only_regular_files_are_read() {
        assert!(matches!(read_file(Path::new("/dev/null")), Err(ReadError::NotAFile { kind: "character device" })));
        assert!(matches!(read_file(Path::new("/")), Err(ReadError::NotAFile { kind: "directory" })));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(matches!(read_file(&fifo), Err(ReadError::NotAFile { kind: "FIFO" })));
    }

    #[test]
    fn more_than_the_limit_is_refused() {
        let at_limit = std::io::repeat(b'a').take(MAX_FILE_BYTES);
        assert_eq!(read_all(at_limit).unwrap().len() as u64, MAX_FILE_BYTES);
        assert!(matches!(read_all(std::io::repeat(b'a').take(MAX_FILE_BYTES + 1)), Err(ReadError::TooLarge)));
    }

    #[test]
    fn a_syntax_error_is_placed() {
        assert!(matches!(scan("a: 1\nb: [x\n"), Scan::Invalid(Position { line: 3, column: 1 }, _)));
    }
}
