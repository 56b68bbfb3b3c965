//! Reading /proc/self/mountinfo: the overlay upperdir of a rootfs that the
//! engine mounted itself. Docker's overlay2 graphdriver mounts the
//! container's rootfs before Create and sends no rootfs mounts, so the only
//! record of where the container's changes land is the mount table.

use std::path::{Path, PathBuf};

/// One line of mountinfo, the fields this module needs.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    mount_point: PathBuf,
    fs_type: String,
    super_options: Vec<String>,
}

/// `proc_pid_mountinfo(5)`: ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS. Paths and option values have
/// space, tab, newline, backslash (and, for overlay's paths, comma) escaped
/// as `\ooo`, so splitting on spaces and commas is safe before unescaping.
fn parse_line(line: &str) -> Option<MountLine> {
    let (head, tail) = line.split_once(" - ")?;
    let mount_point = head.split(' ').nth(4)?;
    let mut tail = tail.split(' ');
    let fs_type = tail.next()?;
    let _source = tail.next()?;
    let super_options = tail.next().unwrap_or("");
    Some(MountLine {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
        super_options: super_options.split(',').map(unescape).collect(),
    })
}

/// Undoes the kernel's `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why the upperdir of a mount point cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum NoUpperdir {
    /// Nothing is mounted there: the rootfs is a plain directory.
    NotMounted,
    /// The topmost mount there is not an overlay.
    NotOverlay(String),
    /// An overlay without an upperdir (read-only) or with a relative one
    /// (mounted after a chdir, as docker does when the options are too long
    /// for one page); its path cannot be known from here.
    Unknown(Option<String>),
}

/// The upperdir of the overlay mounted at `mount_point` in `mountinfo`
/// (the topmost mount there, as later lines stack on earlier ones).
pub fn overlay_upperdir(mountinfo: &str, mount_point: &Path) -> Result<PathBuf, NoUpperdir> {
    let top = mountinfo
        .lines()
        .rev()
        .filter_map(parse_line)
        .find(|m| m.mount_point == mount_point)
        .ok_or(NoUpperdir::NotMounted)?;
    if top.fs_type != "overlay" {
        return Err(NoUpperdir::NotOverlay(top.fs_type));
    }
    let upper = top
        .super_options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="));
    match upper.map(PathBuf::from) {
        Some(p) if p.is_absolute() => Ok(p),
        other => Err(NoUpperdir::Unknown(other.map(|p| p.display().to_string()))),
    }
}

/// [`overlay_upperdir`] against this process's mount table.
pub fn own_overlay_upperdir(mount_point: &Path) -> Result<PathBuf, NoUpperdir> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // mountinfo shows resolved paths; the spec's may go through symlinks.
    let resolved = std::fs::canonicalize(mount_point).unwrap_or_else(|_| mount_point.into());
    overlay_upperdir(&mountinfo, &resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Docker 26 overlay2 on kernel 6.x: the merged dir mounted by dockerd.
    const DOCKER: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
412 25 0:77 / /var/lib/docker/overlay2/0f3c/merged rw,relatime shared:200 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/AB:/var/lib/docker/overlay2/l/CD,upperdir=/var/lib/docker/overlay2/0f3c/diff,workdir=/var/lib/docker/overlay2/0f3c/work,nouserxattr
";

    #[test]
    fn finds_dockers_upperdir() {
        let merged = Path::new("/var/lib/docker/overlay2/0f3c/merged");
        assert_eq!(
            overlay_upperdir(DOCKER, merged),
            Ok(PathBuf::from("/var/lib/docker/overlay2/0f3c/diff"))
        );
    }

    #[test]
    fn explains_what_is_missing() {
        assert_eq!(
            overlay_upperdir(DOCKER, Path::new("/bundle/rootfs")),
            Err(NoUpperdir::NotMounted)
        );
        assert_eq!(
            overlay_upperdir(DOCKER, Path::new("/")),
            Err(NoUpperdir::NotOverlay("ext4".into()))
        );
        let relative = "9 1 0:7 / /m rw - overlay overlay rw,lowerdir=l/A,upperdir=0f3c/diff,workdir=0f3c/work\n";
        assert_eq!(
            overlay_upperdir(relative, Path::new("/m")),
            Err(NoUpperdir::Unknown(Some("0f3c/diff".into())))
        );
        let read_only = "9 1 0:7 / /m ro - overlay overlay ro,lowerdir=/a:/b\n";
        assert_eq!(
            overlay_upperdir(read_only, Path::new("/m")),
            Err(NoUpperdir::Unknown(None))
        );
    }

    #[test]
    fn the_topmost_mount_wins() {
        let stacked = "\
9 1 0:7 / /m rw - overlay overlay rw,lowerdir=/l,upperdir=/old,workdir=/w
10 9 0:8 / /m rw - overlay overlay rw,lowerdir=/l,upperdir=/new,workdir=/w2
";
        assert_eq!(
            overlay_upperdir(stacked, Path::new("/m")),
            Ok(PathBuf::from("/new"))
        );
    }

    #[test]
    fn unescapes_paths_and_options() {
        let odd = "9 1 0:7 / /var/lib/my\\040docker/m rw - overlay overlay rw,lowerdir=/l,upperdir=/u\\054p\\040x,workdir=/w\n";
        assert_eq!(
            overlay_upperdir(odd, Path::new("/var/lib/my docker/m")),
            Ok(PathBuf::from("/u,p x"))
        );
        // optional fields (shared:, master:) before the separator
        let opt = "9 1 0:7 / /m rw shared:3 master:1 - overlay none rw,upperdir=/u\n";
        assert_eq!(
            overlay_upperdir(opt, Path::new("/m")),
            Ok(PathBuf::from("/u"))
        );
        assert_eq!(unescape("a\\134b\\9"), "a\\b\\9");
    }

    #[test]
    fn ignores_garbage() {
        assert_eq!(
            overlay_upperdir("garbage\n\n", Path::new("/m")),
            Err(NoUpperdir::NotMounted)
        );
    }
}
