//! Unit tests of `file://` listing, fetching and URI conversion (no network).

use std::path::Path;

use super::*;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn file_uri_round_trips_odd_names() {
    for name in ["plain.txt", "with space.txt", "hash#1?.txt", "ünï cødé.txt", "100%.txt", "%41\n\t.txt"] {
        let path = Path::new("/tmp/x dir").join(name);
        let uri = file_uri(&path);
        assert!(uri.starts_with("file:///tmp/x%20dir/"), "{uri}");
        assert!(!uri.contains(' ') && !uri[7..].contains('#'), "{uri}");
        assert_eq!(file_path(&uri).unwrap(), path);
    }
    assert!(file_path("s3://b/k").is_err());
    assert!(file_path("file://otherhost/x").is_err());
    assert!(file_uri(Path::new("rel/x")).starts_with("file:///"));
}

#[tokio::test]
async fn lists_nested_files_sorted_with_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("in put");
    write(&root, "b/z.txt", b"zz");
    write(&root, "a.txt", b"a");
    write(&root, "b/a b.txt", b"ab");
    write(&root, "c/d/ü.bin", b"u");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let listed = list(&file_uri(&root), None).await.unwrap().objects;
    let paths: Vec<_> = listed.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "b/a b.txt", "b/z.txt", "c/d/ü.bin"]);
    assert_eq!(listed[1].size, Some(2));
    assert_eq!(file_path(&listed[3].uri).unwrap(), root.join("c/d/ü.bin"));
    // A single file lists as itself.
    let one = list(&file_uri(&root.join("b/z.txt")), None).await.unwrap().objects;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].path.as_str(), "z.txt");
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_inside_the_root_are_followed_and_the_others_reported() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write(&root, "real.txt", b"r");
    write(&root, "sub/deep.txt", b"d");
    write(dir.path(), "outside.txt", b"secret");
    symlink(dir.path().join("outside.txt"), root.join("out-link")).unwrap();
    symlink(dir.path(), root.join("out-dir")).unwrap();
    symlink(root.join("real.txt"), root.join("in-link")).unwrap();
    symlink("sub", root.join("in-dir")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    symlink("..", root.join("sub/up")).unwrap();
    let listing = list(&file_uri(&root), None).await.unwrap();
    let paths: Vec<_> = listing.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["in-dir/deep.txt", "in-link", "real.txt", "sub/deep.txt"]);
    let skipped: Vec<_> = listing.skipped_links.iter().map(|l| (l.path.as_str(), l.reason)).collect();
    assert_eq!(
        skipped,
        [
            ("dangling", SkipReason::Dangling),
            ("in-dir/up", SkipReason::Loop),
            ("out-dir", SkipReason::Outside),
            ("out-link", SkipReason::Outside),
            ("sub/up", SkipReason::Loop)
        ]
    );
    let dest = dir.path().join("fetched");
    fetch(&listing.objects[0].uri, &dest, None).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"d", "a file is fetched through the link");
}

#[cfg(unix)]
#[tokio::test]
async fn a_name_that_is_not_utf8_is_an_error_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    std::fs::write(dir.path().join(name), b"x").unwrap();
    let err = list(&file_uri(dir.path()), None).await.unwrap_err();
    assert!(err.to_string().contains("bad") && err.to_string().contains("file name is not UTF-8"), "{err}");
}

#[tokio::test]
async fn fetch_copies_and_creates_parents() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/a b.txt", b"hello");
    let uri = file_uri(&dir.path().join("src/a b.txt"));
    let dest = dir.path().join("out/deep/x.txt");
    assert_eq!(fetch(&uri, &dest, None).await.unwrap(), 5);
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
}

#[tokio::test]
async fn errors_name_the_uri() {
    let err = list("file:///definitely/not/here", None).await.unwrap_err();
    assert!(err.to_string().contains("file:///definitely/not/here"), "{err}");
    let err = list("runs:/abc/x", None).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NeedsTracking { .. }));
    let err = fetch("ftp://h/x", Path::new("/tmp/x"), None).await.unwrap_err();
    assert_eq!(err.uri(), "ftp://h/x");
}
