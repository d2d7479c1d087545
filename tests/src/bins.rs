//! Where the project's binaries and the system tools are.

use std::path::PathBuf;

use crate::HarnessError;

/// The project binary `name`: `$SDN_BIN_DIR/name`, else next to the test
/// executable's `deps/` directory (`target/<profile>/name`).
pub fn project(name: &'static str) -> Result<PathBuf, HarnessError> {
    let dir = match std::env::var_os("SDN_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().map_err(HarnessError::io("locating the test executable"))?;
            let deps = exe.parent().map(PathBuf::from).unwrap_or_default();
            // Test executables live in target/<profile>/deps, binaries one up.
            if deps.ends_with("deps") { deps.parent().map(PathBuf::from).unwrap_or(deps) } else { deps }
        }
    };
    let path = dir.join(name);
    if path.is_file() { Ok(path) } else { Err(HarnessError::MissingBinary { name, path }) }
}

/// A system tool on PATH, or a clear error naming the package to install.
pub fn tool(name: &'static str, hint: &'static str) -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(HarnessError::MissingTool { what: name, hint })
}
