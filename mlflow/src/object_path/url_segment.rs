//! Object path segments in URLs (`file://`, `s3://`, the artifact proxy, the tracking API):
//! every byte outside RFC 3986's unreserved characters is percent-encoded, so that decoding the
//! URL gives the same bytes back. (`url`'s `path_segments_mut().extend` would drop tabs and
//! newlines, as the URL standard's parser does.)

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// Bytes encoded in a segment: all but ASCII letters, digits, `-`, `.`, `_` and `~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `segment` percent-encoded for a URL path.
pub fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Raw bytes (a file name that may not be UTF-8) percent-encoded for a URL path.
pub fn encode_bytes(segment: &[u8]) -> String {
    percent_encoding::percent_encode(segment, SEGMENT).to_string()
}

/// `base` with `segments` (raw) appended to its path; query and fragment dropped. `None` when
/// `base` cannot hold a path (`mailto:` and the like).
pub fn with_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Option<Url> {
    if base.cannot_be_a_base() {
        return None;
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    for segment in segments {
        path.push('/');
        path.push_str(&encode(segment));
    }
    url.set_path(&path);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_comes_back() {
        let base = Url::parse("http://h:1/prefix/?q=1#f").unwrap();
        let url = with_segments(&base, ["api", "a b#?", "ü%", "n\nt\t", "%41"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/prefix/api/a%20b%23%3F/%C3%BC%25/n%0At%09/%2541");
        let back: Vec<String> = url
            .path_segments()
            .unwrap()
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned())
            .collect();
        assert_eq!(back, ["prefix", "api", "a b#?", "ü%", "n\nt\t", "%41"]);
        assert!(with_segments(&Url::parse("mailto:x@y").unwrap(), ["a"]).is_none());
    }
}
