//! Object keys: relative, `/`-separated, no `.` or `..` segment.

use object_store::path::Path;

use crate::error::Error;

/// Checks and converts an object key.
pub(crate) fn object_key(key: &str) -> Result<Path, Error> {
    let path = prefix_key(key)?;
    if path.as_ref().is_empty() {
        return Err(Error::InvalidPath {
            path: key.to_string(),
            reason: "an object key must not be empty".to_string(),
        });
    }
    Ok(path)
}

/// Checks and converts a prefix ("" is the root).
pub(crate) fn prefix_key(key: &str) -> Result<Path, Error> {
    let invalid = |reason: String| Error::InvalidPath {
        path: key.to_string(),
        reason,
    };
    if key.starts_with('/') {
        return Err(invalid(
            "keys are relative and must not start with '/'".into(),
        ));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(invalid("'.' and '..' segments are not allowed".into()));
    }
    Path::parse(key).map_err(|e| invalid(e.to_string()))
}
