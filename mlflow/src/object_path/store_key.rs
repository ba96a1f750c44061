//! Object paths as `object_store` keys, exactly. `object_store`'s own `Path::from` and
//! `Path::join` percent-encode `%`, `#`, quotes, non-ASCII letters and more into the key (an
//! object `ü` would be stored as `%C3%BC`); here every segment is taken raw instead
//! (`PathPart::parse`), so the key holds the name's bytes. The stores put raw keys on the wire
//! percent-encoded and read them back decoded. `object_store` refuses ASCII control characters
//! in a key (newline, tab, …), so such names are refused here, naming the object.

use object_store::path::{Path as StoreKey, PathPart};

use super::{ObjectPath, UnrepresentableName};

/// Why an object store cannot hold a name.
const CONTROL: &str = "object_store keys cannot hold ASCII control characters (newline, tab, …)";

/// The key of `path` under `prefix` (a key as `object_store` parsed it from a URL).
pub fn to_store_key(prefix: &StoreKey, path: &ObjectPath) -> Result<StoreKey, UnrepresentableName> {
    let mut key = prefix.clone();
    for segment in path.segments() {
        let part = PathPart::parse(segment).map_err(|_| UnrepresentableName {
            path: path.as_str().to_owned(),
            store: "an object store",
            reason: CONTROL,
        })?;
        key = key.join(part);
    }
    Ok(key)
}

/// The object path of `key` below `prefix` (`None` when `key` is `prefix` itself or not
/// below it, or its parts are not an object path).
pub fn from_store_key(prefix: &StoreKey, key: &StoreKey) -> Option<ObjectPath> {
    let parts: Vec<PathPart<'_>> = key.prefix_match(prefix)?.collect();
    let joined = parts.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join("/");
    ObjectPath::parse(&joined).ok()
}
