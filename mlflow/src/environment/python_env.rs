//! `python_env.yaml` as MLflow reads it (`mlflow.utils.environment._PythonEnv`): `python` (a
//! version string), `build_dependencies` and `dependencies` (pip requirement lines, where
//! `-r file` and `-c file` name files of the project), and the content hash that names its
//! built environment.

use std::path::{Component, Path, PathBuf};

use serde_yaml::Value;
use sha2::{Digest, Sha256};

use crate::project::python_str;
use crate::yaml_limits::{self, ReadError};

/// A parsed `python_env.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonEnv {
    /// The Python version (`3.11`, `3.11.7`); `None`: the machine's Python.
    pub python: Option<String>,
    /// Installed first.
    pub build_dependencies: Vec<String>,
    /// Installed after the build dependencies.
    pub dependencies: Vec<String>,
}

/// Why a `python_env` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PythonEnvError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file, as the MLproject names it.
        file: String,
        /// The cause.
        #[source]
        source: ReadError,
    },
    /// The text is not YAML.
    #[error("{file}: not valid YAML: {source}")]
    Yaml {
        /// The file.
        file: String,
        /// The YAML error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A key holds something MLflow does not take.
    #[error("{file}: {place}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// The key.
        place: String,
        /// What is wrong.
        problem: String,
    },
    /// A `-r`/`-c` line names a file the project does not hold.
    #[error("{file}: {place}: '{line}' names {requirement}, which is not a file of the project")]
    MissingRequirementFile {
        /// The file.
        file: String,
        /// The key.
        place: String,
        /// The requirement line.
        line: String,
        /// The file it names.
        requirement: String,
    },
}

impl PythonEnv {
    /// Reads `file` (relative to `project_dir`) and checks the files its `-r`/`-c` lines name.
    pub fn load(project_dir: &Path, file: &str) -> Result<PythonEnv, PythonEnvError> {
        let bytes = yaml_limits::read_file(&project_dir.join(file))
            .map_err(|source| PythonEnvError::Read { file: file.to_owned(), source })?;
        let text = String::from_utf8_lossy(&bytes);
        let env = PythonEnv::parse(&text, file)?;
        for (place, line, requirement) in env.requirement_files() {
            if !is_inside(&requirement) || !project_dir.join(&requirement).is_file() {
                return Err(PythonEnvError::MissingRequirementFile { file: file.to_owned(), place, line, requirement });
            }
        }
        Ok(env)
    }

    /// Parses the text of a `python_env` file named `file` (which starts every error).
    pub fn parse(text: &str, file: &str) -> Result<PythonEnv, PythonEnvError> {
        let invalid = |place: &str, problem: String| PythonEnvError::Invalid {
            file: file.to_owned(),
            place: place.to_owned(),
            problem,
        };
        let doc: Value =
            serde_yaml::from_str(text).map_err(|source| PythonEnvError::Yaml { file: file.to_owned(), source })?;
        let map = match doc {
            Value::Mapping(map) => map,
            Value::Null => return Ok(PythonEnv::default()),
            other => return Err(invalid("(top level)", format!("expected a mapping, found {}", kind(&other)))),
        };
        let mut env = PythonEnv::default();
        for (key, value) in &map {
            let key = python_str(key).unwrap_or_default();
            match key.as_str() {
                "python" => match value {
                    Value::Null => {}
                    Value::String(version) if !version.trim().is_empty() => {
                        env.python = Some(version.trim().to_owned())
                    }
                    Value::String(_) => return Err(invalid("python", "must not be empty".into())),
                    Value::Number(n) => {
                        return Err(invalid(
                            "python",
                            format!("expected a string, found the number {n} (quote the version: python: \"{n}\")"),
                        ));
                    }
                    other => return Err(invalid("python", format!("expected a string, found {}", kind(other)))),
                },
                "build_dependencies" | "dependencies" => {
                    let list = match value {
                        Value::Null => Vec::new(),
                        Value::Sequence(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, item)| match item {
                                Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) | Value::Null => Err(
                                    invalid(&format!("{key}[{i}]"), format!("expected a string, found {}", kind(item))),
                                ),
                                scalar => Ok(python_str(scalar).unwrap_or_default()),
                            })
                            .collect::<Result<_, _>>()?,
                        other => return Err(invalid(&key, format!("expected a list, found {}", kind(other)))),
                    };
                    if key == "dependencies" {
                        env.dependencies = list;
                    } else {
                        env.build_dependencies = list;
                    }
                }
                // MLflow passes every key to `_PythonEnv(**dict)`, which refuses unknown ones.
                other => {
                    return Err(invalid(
                        other,
                        "unknown key (expected python, build_dependencies, dependencies)".into(),
                    ));
                }
            }
        }
        Ok(env)
    }

    /// The files named by `-r`/`--requirement`/`-c`/`--constraint` lines: (place, line, file).
    pub fn requirement_files(&self) -> Vec<(String, String, String)> {
        let lists = [("build_dependencies", &self.build_dependencies), ("dependencies", &self.dependencies)];
        let mut files = Vec::new();
        for (key, list) in lists {
            for (i, line) in list.iter().enumerate() {
                if let Some((file, _)) = referenced_file(line) {
                    files.push((format!("{key}[{i}]"), line.clone(), file.to_owned()));
                }
            }
        }
        files
    }

    /// The requirement lines to install after the build dependencies, with the files of
    /// `-r`/`-c` lines made absolute under `project_dir`.
    pub fn dependency_lines(&self, project_dir: &Path) -> Vec<String> {
        self.dependencies.iter().map(|line| absolute_reference(line, project_dir)).collect()
    }

    /// The build dependency lines, made absolute as [`PythonEnv::dependency_lines`].
    pub fn build_dependency_lines(&self, project_dir: &Path) -> Vec<String> {
        self.build_dependencies.iter().map(|line| absolute_reference(line, project_dir)).collect()
    }

    /// The hash naming this environment's build: the version, every line, and the content
    /// of every file a `-r`/`-c` line names (read under `project_dir`; a missing one hashes
    /// as missing, and fails the build later).
    pub fn content_hash(&self, project_dir: &Path) -> String {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(b"concurrent python_env v1");
        field(self.python.as_deref().unwrap_or("").as_bytes());
        for list in [&self.build_dependencies, &self.dependencies] {
            field(list.len().to_string().as_bytes());
            for line in list {
                field(line.as_bytes());
            }
        }
        for (_, _, file) in self.requirement_files() {
            field(file.as_bytes());
            match std::fs::read(project_dir.join(&file)) {
                Ok(content) => field(&content),
                Err(_) => field(b"\0missing"),
            }
        }
        hex(&hash.finalize())
    }
}

/// The file a `-r`/`-c` requirement line names, and whether it is a constraints file.
fn referenced_file(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    let (first, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(a, b)| (a, b.trim()));
    let (name, constraint) = match first {
        "-r" | "--requirement" => (rest, false),
        "-c" | "--constraint" => (rest, true),
        _ => {
            if let Some(name) = first.strip_prefix("--requirement=") {
                (name, false)
            } else if let Some(name) = first.strip_prefix("--constraint=") {
                (name, true)
            } else if let Some(name) = first.strip_prefix("-r").filter(|_| !first.starts_with("--")) {
                (name, false)
            } else if let Some(name) = first.strip_prefix("-c").filter(|_| !first.starts_with("--")) {
                (name, true)
            } else {
                return None;
            }
        }
    };
    (!name.is_empty()).then_some((name, constraint))
}

fn absolute_reference(line: &str, project_dir: &Path) -> String {
    match referenced_file(line) {
        Some((file, constraint)) => {
            format!("{} {}", if constraint { "-c" } else { "-r" }, project_dir.join(file).display())
        }
        None => line.to_owned(),
    }
}

fn is_inside(file: &str) -> bool {
    let path = PathBuf::from(file);
    path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
