//! Generated names round-tripped through each store's write, list and read: `file://` inputs,
//! `file://` MLflow artifact roots, and object stores (`object_store`'s in-memory and local
//! file system stores). Every name comes back with the same bytes, or is refused, named.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use concurrent_tests::names::{has_control, object_paths};
use object_store::ObjectStore;
use object_store::path::Path as StoreKey;
use proptest::prelude::*;

use super::*;
use crate::object_path::store_key::{from_store_key, to_store_key};
use crate::tracking::MlflowClient;

/// Writes each name as a file holding its own name under `dir`.
fn write_files(dir: &Path, names: &[String]) -> Vec<ObjectPath> {
    names
        .iter()
        .map(|name| {
            let path = ObjectPath::parse(name).unwrap();
            let file = path.to_fs_path(dir);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, name.as_bytes()).unwrap();
            path
        })
        .collect()
}

fn sorted(mut paths: Vec<ObjectPath>) -> Vec<ObjectPath> {
    paths.sort();
    paths
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// `file://` input: listed under their exact names, fetched with their bytes.
    #[test]
    fn file_inputs_keep_every_name(names in object_paths()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("in");
        let written = write_files(&root, &names);
        let listing = runtime().block_on(list(&file_uri(&root), None)).unwrap();
        let listed: Vec<ObjectPath> = listing.objects.iter().map(|o| o.path.clone()).collect();
        prop_assert_eq!(&listed, &sorted(written));
        for object in &listing.objects {
            let dest = object.path.to_fs_path(&dir.path().join("fetched"));
            runtime().block_on(fetch(&object.uri, &dest, None)).unwrap();
            prop_assert_eq!(std::fs::read(&dest).unwrap(), object.path.as_str().as_bytes());
        }
    }

    /// A `file://` MLflow artifact root: files under the exact names, as MLflow lays them out.
    #[test]
    fn file_artifact_roots_keep_every_name(names in object_paths()) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let written = write_files(&src, &names);
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let root = file_uri(&artifacts);
        let client = MlflowClient::new("http://127.0.0.1:9").unwrap();
        let outputs = ObjectPath::parse("outputs").unwrap();
        let rt = runtime();
        for path in &written {
            let target = outputs.join(path);
            rt.block_on(client.upload_file(&root, &target, &path.to_fs_path(&src))).unwrap();
            prop_assert!(target.to_fs_path(&artifacts).is_file(), "{:?} is a file of that name", target.as_str());
        }
        let listed = rt.block_on(client.list_artifacts_recursive(&root, Some(&outputs))).unwrap();
        let listed: Vec<ObjectPath> = listed.into_iter().map(|e| e.path.strip_prefix(&outputs).unwrap()).collect();
        prop_assert_eq!(&listed, &sorted(written.clone()));
        for path in &written {
            let uri = crate::tracking::join_artifact_uri(&root, &outputs.join(path)).unwrap();
            let dest = dir.path().join("got");
            rt.block_on(client.download(&uri, &dest)).unwrap();
            prop_assert_eq!(std::fs::read(&dest).unwrap(), path.as_str().as_bytes());
        }
    }

    /// Object stores: exact keys; names with control characters refused, named.
    #[test]
    fn object_stores_keep_every_name_they_can_hold(names in object_paths()) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let written = write_files(&src, &names);
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store")).unwrap();
        let stores: [(&str, Arc<dyn ObjectStore>); 2] =
            [("memory", Arc::new(object_store::memory::InMemory::new())), ("local", Arc::new(local))];
        let prefix = StoreKey::parse("run 1/outputs").unwrap();
        let rt = runtime();
        for (kind, store) in stores {
            let mut kept = BTreeMap::new();
            for path in &written {
                let key = to_store_key(&prefix, path);
                if has_control(path.as_str()) {
                    let err = key.unwrap_err();
                    prop_assert!(err.to_string().contains(&format!("{:?}", path.as_str())), "{}", err);
                    continue;
                }
                let key = key.unwrap();
                let uploaded = rt.block_on(store::upload(store.clone(), &key, &path.to_fs_path(&src)));
                // The local file system store keeps `name#<digits>` for its own part files, and
                // reads a segment ending in `:` as a drive letter (through `url`). Concurrent
                // never writes `file://` through it: file roots are plain files.
                let part_like = path.file_name().rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                let drive_like = path.as_str().split('/').any(|segment| segment.ends_with(':'));
                if kind == "local" && drive_like {
                    continue;
                }
                if kind == "local" && part_like {
                    prop_assert!(uploaded.is_err(), "{:?}", path.as_str());
                    continue;
                }
                uploaded.unwrap();
                kept.insert(path.clone(), key);
            }
            let listed = rt.block_on(store::list_recursive(store.as_ref(), &prefix)).unwrap();
            let listed: Vec<ObjectPath> = sorted(listed.iter().map(|m| from_store_key(&prefix, &m.location).unwrap()).collect());
            prop_assert_eq!(&listed, &kept.keys().cloned().collect::<Vec<_>>(), "{}", kind);
            for (path, key) in &kept {
                let dest = dir.path().join("got");
                rt.block_on(store::download(store.as_ref(), key, &dest)).unwrap();
                prop_assert_eq!(std::fs::read(&dest).unwrap(), path.as_str().as_bytes());
            }
        }
    }
}
