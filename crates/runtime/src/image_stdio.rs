//! What the checkpointed init had as stdio, from `descriptors.json` (written
//! at dump), and whether a new container can take it: CRIU can only give a
//! terminal to a process that had one, and has nothing to put behind a
//! terminal's pipes.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// The file the dump writes beside CRIU's images: the init's fds 0–2.
pub const DESCRIPTORS: &str = "descriptors.json";

/// What the checkpointed init had as stdin, stdout and stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageStdio {
    /// Pipes (or files): restored onto the new container's pipes.
    Pipes,
    /// A pty slave whose master (outside the container) was not dumped.
    Terminal,
}

impl std::fmt::Display for ImageStdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageStdio::Pipes => "pipes",
            ImageStdio::Terminal => "a terminal",
        })
    }
}

pub(crate) fn read_descriptors(id: &str, images_dir: &Path) -> Result<Vec<String>> {
    let path = images_dir.join(DESCRIPTORS);
    let bad = |reason: String| RuntimeError::Image {
        id: id.to_string(),
        file: DESCRIPTORS,
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

fn image_stdio_of(descriptors: &[String]) -> ImageStdio {
    if descriptors
        .iter()
        .take(3)
        .any(|d| d.starts_with("/dev/pts/"))
    {
        ImageStdio::Terminal
    } else {
        ImageStdio::Pipes
    }
}

/// Checks that an image's stdio can be restored into a container with (or
/// without) a terminal.
pub fn check_image_stdio(id: &str, images_dir: &Path, terminal: bool) -> Result<()> {
    stdio_matches(id, &read_descriptors(id, images_dir)?, terminal)
}

pub(crate) fn stdio_matches(id: &str, descriptors: &[String], terminal: bool) -> Result<()> {
    let image = image_stdio_of(descriptors);
    let wanted = if terminal {
        ImageStdio::Terminal
    } else {
        ImageStdio::Pipes
    };
    if image != wanted {
        return Err(RuntimeError::StdioMismatch {
            id: id.to_string(),
            image,
            wanted,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_terminal_restores_only_into_a_terminal() {
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tty = d(&["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"]);
        let pipes = d(&["pipe:[1]", "pipe:[2]", "pipe:[3]"]);
        let detached = d(&["/dev/null", "pipe:[2]", "pipe:[2]"]);
        assert!(super::stdio_matches("c", &tty, true).is_ok());
        assert!(super::stdio_matches("c", &pipes, false).is_ok());
        assert!(super::stdio_matches("c", &detached, false).is_ok());
        let e = super::stdio_matches("c", &pipes, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("had pipes") && e.contains("wants a terminal"),
            "{e}"
        );
        let e = super::stdio_matches("c", &tty, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("had a terminal") && e.contains("wants pipes"),
            "{e}"
        );
    }
}
