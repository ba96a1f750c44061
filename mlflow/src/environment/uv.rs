//! Building `python_env` environments with uv: the Python found on the machine (uv never
//! downloads one: `UV_PYTHON_DOWNLOADS=never`), a virtual environment, then the build
//! dependencies and the dependencies installed with `uv pip install`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::PythonEnv;

/// The variable naming the uv program (default: `uv` on PATH).
pub const UV_VARIABLE: &str = "CONCURRENT_UV";

/// The uv program to run.
pub fn program() -> OsString {
    std::env::var_os(UV_VARIABLE).filter(|p| !p.is_empty()).unwrap_or_else(|| "uv".into())
}

/// A uv step failed.
#[derive(Debug, thiserror::Error)]
pub enum UvError {
    /// uv could not be started.
    #[error("cannot run uv ({program}): {source}; install it with `pip install uv` or set {UV_VARIABLE}")]
    Missing {
        /// The program tried.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No installed Python matches the version.
    #[error(
        "Python {version} is not installed on this machine ({message}); install it (`uv python install {version}`) or change `python:`"
    )]
    PythonNotFound {
        /// The version asked for.
        version: String,
        /// uv's first line.
        message: String,
    },
    /// A step exited non-zero.
    #[error("`{step}` failed ({status}): {message}")]
    Step {
        /// The uv command line, shortened.
        step: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The last lines of its error output.
        message: String,
    },
    /// The log or a requirements file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn uv() -> Command {
    let mut command = Command::new(program());
    command.env("UV_PYTHON_DOWNLOADS", "never").env_remove("VIRTUAL_ENV").env_remove("PYTHONHOME");
    command
}

fn output(mut command: Command) -> Result<Output, UvError> {
    command.output().map_err(|source| UvError::Missing { program: program().to_string_lossy().into_owned(), source })
}

/// The interpreter uv would build `version` from (`None`: its default Python), without
/// downloading anything.
pub fn find_python(version: Option<&str>) -> Result<PathBuf, UvError> {
    let mut command = uv();
    command.args(["python", "find", "--system"]);
    command.args(version);
    let out = output(command)?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let message = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("uv found none").to_owned();
        return Err(UvError::PythonNotFound { version: version.unwrap_or("(default)").to_owned(), message });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Builds `env` into `dir` (which does not exist yet), from the project at `project_dir`;
/// uv's output goes to `log`.
pub fn build(dir: &Path, project_dir: &Path, env: &PythonEnv, log: &mut std::fs::File) -> Result<(), UvError> {
    let python = find_python(env.python.as_deref())?;
    let mut venv = uv();
    venv.arg("venv").arg("--python").arg(&python).arg("--no-config").arg(dir).current_dir(project_dir);
    run_step("uv venv", venv, log)?;
    let target = dir.join("bin").join("python");
    let lists = [
        ("build_dependencies", env.build_dependency_lines(project_dir)),
        ("dependencies", env.dependency_lines(project_dir)),
    ];
    for (name, lines) in lists {
        if lines.is_empty() {
            continue;
        }
        let file = dir.join(format!(".concurrent-{name}.txt"));
        std::fs::write(&file, lines.join("\n") + "\n")
            .map_err(|source| UvError::Write { path: file.clone(), source })?;
        let mut install = uv();
        install
            .args(["pip", "install", "--no-config", "--compile-bytecode", "--python"])
            .arg(&target)
            .arg("-r")
            .arg(&file);
        install.current_dir(project_dir);
        run_step(&format!("uv pip install ({name})"), install, log)?;
    }
    Ok(())
}

fn run_step(step: &str, command: Command, log: &mut std::fs::File) -> Result<(), UvError> {
    let out = output(command)?;
    let write = |log: &mut std::fs::File| -> std::io::Result<()> {
        writeln!(log, "concurrent-worker: {step}")?;
        log.write_all(&out.stdout)?;
        log.write_all(&out.stderr)
    };
    write(log).map_err(|source| UvError::Write { path: PathBuf::from("the attempt's log"), source })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let message = lines[lines.len().saturating_sub(8)..].join("\n");
    Err(UvError::Step { step: step.to_owned(), status: out.status, message })
}
