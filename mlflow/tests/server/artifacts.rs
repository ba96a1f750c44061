//! Artifact upload, listing and download through the proxy, by `mlflow-artifacts:` and `runs:/`.

use std::path::Path;

use concurrent_mlflow::artifacts;
use concurrent_mlflow::object_path::ObjectPath;
use concurrent_mlflow::tracking::join_artifact_uri;

use crate::{client, unique};

fn op(path: &str) -> ObjectPath {
    ObjectPath::parse(path).unwrap()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A tree with a space, unicode, nesting and a file bigger than one upload chunk.
fn sample_tree(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("a.txt", b"alpha".to_vec()),
        ("dir/with space.txt", b"spaced".to_vec()),
        ("dir/ünïcødé €.bin", vec![0, 159, 146, 150, 255]),
        ("dir/sub/deeper/big.bin", (0..700_000u32).map(|i| (i % 251) as u8).collect()),
        ("empty.txt", Vec::new()),
    ];
    for (rel, bytes) in &files {
        write(root, rel, bytes);
    }
    files
}

#[tokio::test]
async fn upload_list_download_round_trip() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("art")).await.unwrap();
    let run = client.create_run(&exp, "shard-0", &[]).await.unwrap();
    let local = tempfile::tempdir().unwrap();
    let files = sample_tree(local.path());

    let uploaded = client.upload_dir(&run.artifact_uri, Some(&op("outputs")), local.path()).await.unwrap();
    let mut expected: Vec<(ObjectPath, u64)> = files.iter().map(|(p, b)| (op(p), b.len() as u64)).collect();
    expected.sort();
    assert_eq!(uploaded, expected);

    let top = client.list_artifacts(&run.artifact_uri, Some(&op("outputs"))).await.unwrap();
    let top: Vec<_> = top.iter().map(|e| (e.path.as_str(), e.is_dir)).collect();
    assert_eq!(top, [("outputs/a.txt", false), ("outputs/dir", true), ("outputs/empty.txt", false)]);

    let listed = client.list_artifacts_recursive(&run.artifact_uri, None).await.unwrap();
    let listed_paths: Vec<_> = listed.iter().map(|e| (e.path.clone(), e.size)).collect();
    let want: Vec<_> = expected.iter().map(|(p, n)| (op("outputs").join(p), Some(*n))).collect();
    assert_eq!(listed_paths, want);

    let out = tempfile::tempdir().unwrap();
    for (rel, bytes) in &files {
        let by_proxy = join_artifact_uri(&run.artifact_uri, &op(&format!("outputs/{rel}"))).unwrap();
        let dest = out.path().join("proxy").join(rel);
        assert_eq!(client.download(&by_proxy, &dest).await.unwrap(), bytes.len() as u64);
        assert_eq!(&std::fs::read(&dest).unwrap(), bytes, "{by_proxy}");

        let by_run = format!("runs:/{}/outputs/{rel}", run.run_id);
        let dest = out.path().join("runs").join(rel);
        assert_eq!(client.download(&by_run, &dest).await.unwrap(), bytes.len() as u64);
        assert_eq!(&std::fs::read(&dest).unwrap(), bytes, "{by_run}");
    }
}

#[tokio::test]
async fn artifacts_module_lists_and_fetches_mlflow_uris() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("inputs")).await.unwrap();
    let run = client.create_run(&exp, "upstream", &[]).await.unwrap();
    let local = tempfile::tempdir().unwrap();
    let files = sample_tree(local.path());
    client.upload_dir(&run.artifact_uri, Some(&op("outputs")), local.path()).await.unwrap();

    let uri = format!("runs:/{}/outputs", run.run_id);
    let listed = artifacts::list(&uri, Some(&client)).await.unwrap().objects;
    let mut want: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    want.sort();
    assert_eq!(listed.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(), want);

    let out = tempfile::tempdir().unwrap();
    for object in &listed {
        assert!(object.uri.starts_with(&format!("{}/outputs/", run.artifact_uri)), "{}", object.uri);
        let dest = object.path.to_fs_path(out.path());
        let n = artifacts::fetch(&object.uri, &dest, Some(&client)).await.unwrap();
        assert_eq!(Some(n), object.size);
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(object.path.to_fs_path(local.path())).unwrap());
    }

    let by_proxy = join_artifact_uri(&run.artifact_uri, &op("outputs/dir")).unwrap();
    let sub = artifacts::list(&by_proxy, Some(&client)).await.unwrap().objects;
    assert_eq!(sub.len(), 3, "{sub:?}");
    assert_eq!(sub[0].path.as_str(), "sub/deeper/big.bin");
}

#[tokio::test]
async fn single_file_upload_and_missing_artifact() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("single")).await.unwrap();
    let run = client.create_run(&exp, "s", &[]).await.unwrap();
    let local = tempfile::tempdir().unwrap();
    write(local.path(), "log.txt", b"line\n");
    let n = client
        .upload_file(&run.artifact_uri, &op("logs/entry_point.log"), &local.path().join("log.txt"))
        .await
        .unwrap();
    assert_eq!(n, 5);
    let missing = format!("runs:/{}/logs/nope.log", run.run_id);
    let dest = local.path().join("nope");
    let err = client.download(&missing, &dest).await.unwrap_err();
    assert!(err.status().is_some_and(|s| s == 404 || s >= 400), "{err:?}");
    assert!(!dest.exists());
}
