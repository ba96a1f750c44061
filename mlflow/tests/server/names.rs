//! Generated names through the real MLflow artifact proxy: each one comes back with the same
//! bytes (listing and download), or is refused before any request, naming the object.

use concurrent_mlflow::object_path::ObjectPath;
use concurrent_tests::names::{EVERYWHERE, NOT_THROUGH_THE_PROXY, has_control, object_paths};
use proptest::prelude::*;

use crate::{client, unique};

/// What the proxy cannot keep: `#`, control characters, `%` and two hex digits, a single `?`
/// that ends the name, and a last segment (before any `?`) whose only `;` ends it (MLflow's
/// `urlparse` drops those marks: `a?` and `a;` become `a`).
fn proxy_refuses(name: &str) -> bool {
    let escape =
        name.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    // The name and each directory above it (listed on its own).
    let segments: Vec<&str> = name.split('/').collect();
    let marks = (1..=segments.len()).any(|n| dropped_mark(&segments[..n].join("/")));
    name.contains('#') || has_control(name) || escape || marks
}

/// A single `?` ending the path, or a last segment (before any `?`) whose only `;` ends it.
fn dropped_mark(name: &str) -> bool {
    let before_query = name.split('?').next().unwrap_or(name);
    let dropped_question = name.contains('?') && name.split('?').nth(1) == Some("") && name.matches('?').count() == 1;
    let last = before_query.rsplit('/').next().unwrap_or(before_query);
    let dropped_semicolon = last.split(';').count() == 2 && last.ends_with(';');
    dropped_question || dropped_semicolon
}

/// Uploads every name to a new run through the proxy; checks what comes back.
async fn round_trip(names: &[String]) -> Result<(), TestCaseError> {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("names")).await.unwrap();
    let run = client.create_run(&exp, "names", &[]).await.unwrap();
    prop_assert!(run.artifact_uri.starts_with("mlflow-artifacts:"), "{}", run.artifact_uri);
    let local = tempfile::tempdir().unwrap();
    let outputs = ObjectPath::parse("outputs").unwrap();
    let mut kept = Vec::new();
    for name in names {
        let path = ObjectPath::parse(name).unwrap();
        let file = local.path().join("file");
        std::fs::write(&file, name.as_bytes()).unwrap();
        let uploaded = client.upload_file(&run.artifact_uri, &outputs.join(&path), &file).await;
        if proxy_refuses(name) {
            let err = uploaded.unwrap_err();
            let escaped = format!("{name:?}");
            let named = err.to_string().contains(&format!("/outputs/{}", &escaped[1..escaped.len() - 1]));
            prop_assert!(named, "the error names the object: {}", err);
        } else {
            prop_assert_eq!(uploaded.unwrap(), name.len() as u64);
            kept.push(path);
        }
    }
    kept.sort();
    let listed = client.list_artifacts_recursive(&run.artifact_uri, Some(&outputs)).await.unwrap();
    let listed: Vec<ObjectPath> = listed.into_iter().map(|e| e.path.strip_prefix(&outputs).unwrap()).collect();
    prop_assert_eq!(&listed, &kept, "the proxy lists every name as written, nothing else");
    for path in &kept {
        let uri = format!("runs:/{}/outputs/{path}", run.run_id);
        let dest = local.path().join("got");
        client.download(&uri, &dest).await.unwrap();
        prop_assert_eq!(std::fs::read(&dest).unwrap(), path.as_str().as_bytes());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn the_proxy_keeps_every_name_it_does_not_refuse(names in object_paths()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(round_trip(&names))?;
    }
}

#[tokio::test]
async fn the_fixed_names_pass_and_the_others_are_refused_by_name() {
    let names: Vec<String> = EVERYWHERE.iter().chain(NOT_THROUGH_THE_PROXY.iter()).map(|s| s.to_string()).collect();
    for name in NOT_THROUGH_THE_PROXY {
        assert!(proxy_refuses(name), "{name:?}");
    }
    round_trip(&names).await.unwrap();
}
