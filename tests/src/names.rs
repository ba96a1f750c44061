//! Generated object names for property tests: the characters real data sets hold (spaces,
//! quotes, `%`, `#`, `?`, `+`, letters of several scripts, emoji, combining marks, a leading
//! `-`, newlines and tabs, long names, deep paths), and a fixed list of such names for the
//! end-to-end tests.

use proptest::prelude::*;

/// One segment: spaces, quotes, `%`, `#`, `?`, `+`, letters of several scripts, emoji,
/// combining marks, a leading `-`, newlines and tabs; sometimes long.
pub fn segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9_.]{1,8}",
        1 => Just(" ".to_owned()),
        1 => prop::sample::select(vec!["'", "\"", "%", "%41", "%2F", "#", "?", "+", "&", "=", ";", ":", "\\", "*", "~", "[", "]"])
            .prop_map(str::to_owned),
        2 => prop::sample::select(vec!["ü", "é", "ß", "日本", "한국", "Привет", "مرحبا", "שלום", "ελληνικά", "हिन्दी"])
            .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["😀", "👩‍👩‍👧", "🇫🇷", "e\u{301}", "a\u{308}\u{323}"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["\n", "\t", "\r\n"]).prop_map(str::to_owned),
    ];
    let short = (prop::option::of(Just("-".to_owned())), prop::collection::vec(piece, 1..6))
        .prop_map(|(lead, pieces)| format!("{}{}", lead.unwrap_or_default(), pieces.concat()));
    let long = "[a-z]{200,240}";
    prop_oneof![9 => short, 1 => long].prop_filter("not `.` or `..`", |s| s != "." && s != "..")
}

/// A path of 1 to 8 segments (deep paths included).
pub fn object_path() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::collection::vec(segment(), 1..3), 1 => prop::collection::vec(segment(), 3..9)]
        .prop_map(|segments| segments.join("/"))
}

/// Names that every store holds, the MLflow artifact proxy included: one of each kind.
pub const EVERYWHERE: [&str; 12] = [
    "plain.txt",
    "with space.txt",
    "quote's \"double\".txt",
    "100% sure + more?.txt",
    "ünïcödé/日本語/Привет/مرحبا.txt",
    "emoji 😀 👩‍👩‍👧.txt",
    "combining e\u{301} a\u{308}.txt",
    "-leading-dash.txt",
    "semi;colon&amp=1.txt",
    "back\\slash [brackets] {braces} ~tilde.txt",
    "deep/a/b/c/d/e/f/g.txt",
    "...three dots",
];

/// Names that the filesystem and `file://` artifact roots hold but the MLflow artifact proxy
/// refuses (`#`, control characters, `%` and two hex digits), and object stores refuse when
/// they hold a control character.
pub const NOT_THROUGH_THE_PROXY: [&str; 4] = ["new\nline.txt", "tab\there.txt", "hash #1.txt", "percent %41 %2F.txt"];

/// 1 to 5 generated paths of which none is a directory of another (so all can be files).
pub fn object_paths() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(object_path(), 1..6).prop_map(|set| {
        let all: Vec<String> = set.into_iter().collect();
        all.iter().filter(|p| !all.iter().any(|q| q.starts_with(&format!("{p}/")))).cloned().collect()
    })
}

/// Whether a name holds an ASCII control character (newline, tab, …).
pub fn has_control(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_control())
}
