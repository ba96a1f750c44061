//! Unit tests of object path validation and the filesystem and object-store edges.

use std::path::Path;

use object_store::path::Path as StoreKey;
use proptest::prelude::*;

use super::store_key::{from_store_key, to_store_key};
use super::*;

#[test]
fn any_utf8_name_without_nul_is_a_path_as_written() {
    for good in ["a", "a/b c/d.txt", "new\nline", "tab\t", "%41#?+", "-lead", "...", "..a", " ", "ü/😀/e\u{301}"] {
        assert_eq!(ObjectPath::parse(good).unwrap().as_str(), good);
    }
}

#[test]
fn empty_absolute_dot_segments_and_nul_are_refused() {
    assert_eq!(ObjectPath::parse(""), Err(InvalidObjectPath::Empty));
    assert!(matches!(ObjectPath::parse("/etc/passwd"), Err(InvalidObjectPath::Absolute(_))));
    for bad in ["a//b", "./a", "a/.", "../x", "a/../../x", "a/", ".", ".."] {
        assert!(matches!(ObjectPath::parse(bad), Err(InvalidObjectPath::BadSegment(_))), "{bad}");
    }
    let err = ObjectPath::parse("a\0b").unwrap_err();
    assert_eq!(err.to_string(), r#"object path "a\0b" contains a NUL byte"#);
    let err = ObjectPath::parse("x/../y\nz").unwrap_err();
    assert!(err.to_string().contains(r#""x/../y\nz""#), "a name is quoted on one line: {err}");
}

#[test]
fn filesystem_paths_convert_both_ways() {
    let path = ObjectPath::parse("dir #1/new\nline ü.txt").unwrap();
    let fs = path.to_fs_path(Path::new("/w/in"));
    assert_eq!(fs, Path::new("/w/in/dir #1/new\nline ü.txt"));
    assert_eq!(ObjectPath::below(Path::new("/w/in"), &fs), Some(Ok(path)));
    assert_eq!(ObjectPath::below(Path::new("/w/in"), Path::new("/elsewhere/x")), None);
    assert!(ObjectPath::from_relative(Path::new("../x")).is_err());
    assert!(ObjectPath::from_relative(Path::new("/x")).is_err());
}

#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    let err = ObjectPath::below(Path::new("/o"), &Path::new("/o/d").join(name)).unwrap().unwrap_err();
    assert!(matches!(err, InvalidObjectPath::NotUtf8(_)));
    assert!(err.to_string().contains("/o/d/bad"), "{err}");
}

#[test]
fn joins_and_prefixes() {
    let a = ObjectPath::parse("outputs").unwrap();
    let b = ObjectPath::parse("x/y z").unwrap();
    let ab = a.join(&b);
    assert_eq!(ab.as_str(), "outputs/x/y z");
    assert_eq!(ab.strip_prefix(&a), Some(b.clone()));
    assert_eq!(b.strip_prefix(&a), None);
    assert_eq!(ObjectPath::parse("outputsx/y").unwrap().strip_prefix(&a), None);
    assert_eq!(ab.file_name(), "y z");
    assert_eq!(join_optional(None, Some(&b)), Some(b));
}

#[test]
fn serde_checks_the_path() {
    let path: ObjectPath = serde_json::from_str(r#""a/b\nc""#).unwrap();
    assert_eq!(path.as_str(), "a/b\nc");
    assert_eq!(serde_json::to_string(&path).unwrap(), r#""a/b\nc""#);
    assert!(serde_json::from_str::<ObjectPath>(r#""../x""#).is_err());
}

#[test]
fn store_keys_hold_the_name_not_its_percent_encoding() {
    let prefix = StoreKey::from_url_path("bucket%20dir/runs").unwrap();
    let path = ObjectPath::parse("ü #1/100%25 \"q\".txt").unwrap();
    let key = to_store_key(&prefix, &path).unwrap();
    assert_eq!(key.as_ref(), "bucket dir/runs/ü #1/100%25 \"q\".txt");
    assert_eq!(from_store_key(&prefix, &key), Some(path));
    let err = to_store_key(&prefix, &ObjectPath::parse("a/new\nline").unwrap()).unwrap_err();
    assert!(err.to_string().contains(r#""a/new\nline""#), "{err}");
    assert_eq!(from_store_key(&prefix, &prefix), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn parse_and_the_filesystem_edge_keep_every_byte(path in concurrent_tests::names::object_path()) {
        let parsed = ObjectPath::parse(&path).unwrap();
        prop_assert_eq!(parsed.as_str(), path.as_str());
        let fs = parsed.to_fs_path(Path::new("/root"));
        prop_assert_eq!(ObjectPath::below(Path::new("/root"), &fs), Some(Ok(parsed)));
    }
}
