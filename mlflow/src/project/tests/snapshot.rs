//! Packing and unpacking project snapshots.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tar::{Builder, EntryType, Header};

use crate::project::snapshot::{SnapshotError, check_tree, pack, sha256_hex, unpack};

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

fn sample_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "MLproject", "entry_points: {}");
    write(root, "train.py", "print('hi')");
    write(root, "scripts/run.sh", "#!/bin/sh\necho hi");
    write(root, "deep/er/data.txt", "data");
    fs::create_dir_all(root.join("empty")).expect("mkdir");
    fs::set_permissions(root.join("scripts/run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    write(root, ".git/HEAD", "ref: x");
    write(root, "__pycache__/x.pyc", "x");
    write(root, "sub/__pycache__/y.pyc", "y");
    write(root, ".venv/bin/python", "x");
    write(root, "mlruns/0/meta.yaml", "x");
    dir
}

fn entry_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect()
}

#[test]
fn pack_is_deterministic_and_ignores_mtimes() {
    let dir = sample_project();
    let first = pack(dir.path()).expect("pack");
    let second = pack(dir.path()).expect("pack again");
    assert_eq!(first.hash, second.hash);
    assert_eq!(first.bytes, second.bytes);

    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(dir.path().join("train.py"))
        .expect("open")
        .set_modified(old)
        .expect("set mtime");
    assert_eq!(pack(dir.path()).expect("pack").hash, first.hash);

    write(dir.path(), "train.py", "print('changed')");
    assert_ne!(pack(dir.path()).expect("pack").hash, first.hash);
}

#[test]
fn same_content_in_another_directory_has_the_same_hash() {
    let a = sample_project();
    let b = sample_project();
    assert_eq!(pack(a.path()).expect("a").hash, pack(b.path()).expect("b").hash);
}

#[test]
fn hash_is_lowercase_hex_sha256_of_the_bytes() {
    let snapshot = pack(sample_project().path()).expect("pack");
    assert_eq!(snapshot.hash.len(), 64);
    assert!(snapshot.hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_eq!(snapshot.hash, sha256_hex(&snapshot.bytes));
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn pack_skips_tool_directories_and_sorts_entries() {
    let snapshot = pack(sample_project().path()).expect("pack");
    let names = entry_names(&snapshot.bytes);
    assert_eq!(
        names,
        vec![
            "MLproject",
            "deep",
            "deep/er",
            "deep/er/data.txt",
            "empty",
            "scripts",
            "scripts/run.sh",
            "sub",
            "train.py"
        ]
    );
}

#[test]
fn round_trip_preserves_files_and_the_executable_bit() {
    let project = sample_project();
    let snapshot = pack(project.path()).expect("pack");
    let out = tempfile::tempdir().expect("temp dir");
    let dest = out.path().join("new/project");
    unpack(&snapshot.bytes, &dest).expect("unpack");

    let read = |name: &str| fs::read_to_string(dest.join(name)).expect(name);
    assert_eq!(read("MLproject"), "entry_points: {}");
    assert_eq!(read("train.py"), "print('hi')");
    assert_eq!(read("deep/er/data.txt"), "data");
    assert!(dest.join("empty").is_dir());
    assert!(!dest.join(".git").exists());
    let mode = |name: &str| fs::metadata(dest.join(name)).expect(name).permissions().mode() & 0o777;
    assert_eq!(mode("scripts/run.sh"), 0o755);
    assert_eq!(mode("train.py"), 0o644);
    assert_eq!(pack(&dest).expect("repack").hash, snapshot.hash);
}

#[test]
fn round_trip_keeps_long_and_unusual_names() {
    let project = tempfile::tempdir().expect("temp dir");
    let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(120));
    write(project.path(), &long, "long");
    write(project.path(), "sp ace/ünï{c}ode's.py", "odd");
    let snapshot = pack(project.path()).expect("pack");
    let out = tempfile::tempdir().expect("temp dir");
    unpack(&snapshot.bytes, out.path()).expect("unpack");
    assert_eq!(fs::read_to_string(out.path().join(&long)).expect("long"), "long");
    assert_eq!(fs::read_to_string(out.path().join("sp ace/ünï{c}ode's.py")).expect("odd"), "odd");
    assert_eq!(pack(out.path()).expect("repack").hash, snapshot.hash);
}

#[test]
fn links_inside_the_project_are_packed_as_what_they_point_to() {
    use std::os::unix::fs::symlink;
    let project = sample_project();
    let root = project.path();
    symlink("deep/er/data.txt", root.join("data.txt")).expect("symlink");
    symlink("../deep", root.join("scripts/deep")).expect("symlink");
    let snapshot = pack(root).expect("pack");
    assert_eq!(check_tree(root).ok(), Some(()));

    let out = tempfile::tempdir().expect("temp dir");
    unpack(&snapshot.bytes, out.path()).expect("unpack");
    let linked = out.path().join("data.txt");
    assert!(!linked.is_symlink(), "packed as a file");
    assert_eq!(fs::read_to_string(linked).expect("data.txt"), "data");
    assert!(out.path().join("scripts/deep").is_dir() && !out.path().join("scripts/deep").is_symlink());
    assert_eq!(fs::read_to_string(out.path().join("scripts/deep/er/data.txt")).expect("via dir"), "data");
}

#[test]
fn links_leaving_the_project_dangling_or_looping_are_refused() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().expect("temp dir");
    write(outside.path(), "secret.txt", "s");
    // Both temporary directories are in the same parent.
    let relative = Path::new("../..").join(outside.path().file_name().expect("name")).join("secret.txt");
    let cases = [
        ("absolute", outside.path().join("secret.txt")),
        ("relative", relative),
        ("dangling", "absent.txt".into()),
        ("loop", "..".into()),
    ];
    for (name, target) in cases {
        let project = sample_project();
        let link = project.path().join("sub/link");
        symlink(&target, &link).expect("symlink");
        let err = pack(project.path()).expect_err(name);
        let checked = check_tree(project.path()).expect_err(name);
        assert_eq!(err.to_string(), checked.to_string(), "{name}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("{} is a symbolic link to ", link.display())), "{name}: {text}");
        match name {
            "dangling" => assert!(matches!(err, SnapshotError::DanglingLink { .. }), "{err:?}"),
            "loop" => assert!(matches!(err, SnapshotError::LinkLoop { .. }), "{err:?}"),
            _ => {
                assert!(matches!(err, SnapshotError::LinkOutside { .. }), "{err:?}");
                assert!(text.contains("outside the project"), "{text}");
            }
        }
    }
}

#[test]
fn pack_refuses_a_missing_directory() {
    let err = pack(Path::new("/nonexistent/project")).expect_err("missing");
    assert!(matches!(err, SnapshotError::NotADirectory { .. }));
}

/// A tar with one entry whose stored name is `name`, written without the tar crate's checks.
fn raw_tar(name: &str, kind: EntryType) -> Vec<u8> {
    let data = b"evil";
    let mut header = Header::new_gnu();
    header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(if kind == EntryType::Regular { 4 } else { 0 });
    if kind == EntryType::Symlink {
        header.set_link_name("/etc/passwd").expect("link name");
    }
    header.set_cksum();
    let mut builder = Builder::new(Vec::new());
    let body: &[u8] = if kind == EntryType::Regular { data } else { b"" };
    builder.append(&header, body).expect("append");
    builder.into_inner().expect("finish")
}

#[test]
fn unpack_refuses_parent_directory_entries() {
    let out = tempfile::tempdir().expect("temp dir");
    let dest = out.path().join("dest");
    let err = unpack(&raw_tar("../evil", EntryType::Regular), &dest).expect_err("refused");
    assert!(matches!(err, SnapshotError::UnsafePath { .. }), "{err:?}");
    assert_eq!(err.to_string(), "snapshot entry '../evil' is absolute or contains '..'; refused");
    assert!(!out.path().join("evil").exists());
    let err = unpack(&raw_tar("a/../../evil", EntryType::Regular), &dest).expect_err("refused");
    assert!(matches!(err, SnapshotError::UnsafePath { .. }), "{err:?}");
}

#[test]
fn unpack_refuses_absolute_paths() {
    let out = tempfile::tempdir().expect("temp dir");
    let target = out.path().join("abs-evil");
    let name = target.to_str().expect("utf-8 temp path");
    let err = unpack(&raw_tar(name, EntryType::Regular), &out.path().join("dest")).expect_err("refused");
    assert!(matches!(err, SnapshotError::UnsafePath { .. }), "{err:?}");
    assert!(!target.exists());
}

#[test]
fn unpack_refuses_links() {
    let out = tempfile::tempdir().expect("temp dir");
    for kind in [EntryType::Symlink, EntryType::Link] {
        let err = unpack(&raw_tar("innocent", kind), out.path()).expect_err("refused");
        assert!(matches!(err, SnapshotError::UnsupportedEntry { .. }), "{err:?}");
    }
    assert!(!out.path().join("innocent").exists());
}

#[test]
fn unpack_refuses_garbage() {
    let out = tempfile::tempdir().expect("temp dir");
    let err = unpack(&[7u8; 700], out.path()).expect_err("not a tar");
    assert!(matches!(err, SnapshotError::Tar { .. }), "{err:?}");
}
