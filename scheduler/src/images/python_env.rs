//! MLflow's `python_env.yaml`: the Python version and the packages a project needs.
//!
//! ```yaml
//! python: "3.11"
//! build_dependencies: [pip, setuptools]
//! dependencies: [numpy==2.1.0, -r requirements.txt]
//! ```

use serde::Deserialize;

/// A parsed `python_env.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonEnv {
    /// The Python version, e.g. `3.11` or `3.11.9`.
    pub python: String,
    /// Installed first (pip, setuptools, wheel …).
    #[serde(default)]
    pub build_dependencies: Vec<String>,
    /// pip requirement lines, relative to the project directory (`-r requirements.txt` works).
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// Why a `python_env.yaml` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum PythonEnvError {
    /// Not YAML, or not the shape above.
    #[error("{file}: {source}")]
    Yaml {
        /// The file as named in the MLproject.
        file: String,
        /// The parser's error (with line and column).
        #[source]
        source: serde_yaml::Error,
    },
    /// A key holds a value an image build cannot take.
    #[error("{file}: {place}: {problem}")]
    Invalid {
        /// The file as named in the MLproject.
        file: String,
        /// The key, e.g. `dependencies[2]`.
        place: String,
        /// What is wrong.
        problem: String,
    },
}

impl PythonEnv {
    /// Parses the text of `file` and checks every value.
    pub fn parse(file: &str, text: &str) -> Result<PythonEnv, PythonEnvError> {
        let env: PythonEnv =
            serde_yaml::from_str(text).map_err(|source| PythonEnvError::Yaml { file: file.to_string(), source })?;
        let invalid = |place: String, problem: &str| PythonEnvError::Invalid {
            file: file.to_string(),
            place,
            problem: problem.to_string(),
        };
        let version_ok = {
            let parts: Vec<&str> = env.python.split('.').collect();
            (1..=3).contains(&parts.len())
                && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if !version_ok {
            return Err(invalid("python".into(), "must be a version such as 3.11 or 3.11.9"));
        }
        for (key, list) in [("build_dependencies", &env.build_dependencies), ("dependencies", &env.dependencies)] {
            for (i, entry) in list.iter().enumerate() {
                if entry.trim().is_empty() {
                    return Err(invalid(format!("{key}[{i}]"), "must not be empty"));
                }
                if entry.contains(['\n', '\r', '\0']) {
                    return Err(invalid(format!("{key}[{i}]"), "must be one line"));
                }
            }
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflows_example_parses() {
        let env = PythonEnv::parse(
            "python_env.yaml",
            "python: \"3.11\"\nbuild_dependencies: [pip]\ndependencies: [numpy==2.1.0, -r requirements.txt]\n",
        )
        .unwrap();
        assert_eq!(env.python, "3.11");
        assert_eq!(env.build_dependencies, ["pip"]);
        assert_eq!(env.dependencies, ["numpy==2.1.0", "-r requirements.txt"]);
    }

    #[test]
    fn bad_values_are_named() {
        let message = |text: &str| PythonEnv::parse("python_env.yaml", text).unwrap_err().to_string();
        assert_eq!(
            message("python: \"3.11; rm -rf /\"\n"),
            "python_env.yaml: python: must be a version such as 3.11 or 3.11.9"
        );
        assert_eq!(
            message("python: \"3.11\"\ndependencies: [\"a\\n--index-url http://x\"]\n"),
            "python_env.yaml: dependencies[0]: must be one line"
        );
        assert_eq!(
            message("python: \"3\"\nbuild_dependencies: [\" \"]\n"),
            "python_env.yaml: build_dependencies[0]: must not be empty"
        );
        assert!(message("pyhton: \"3.11\"\n").starts_with("python_env.yaml: unknown field `pyhton`"));
    }
}
