//! `CheckpointContainer`: the OCI runtime's `checkpoint` (CRIU) dumps the
//! running container, left running, into a work folder; berthd then writes
//! the archive the kubelet asked for, in the layout CRI-O and containerd
//! use (checkpointctl reads it): `checkpoint/` (CRIU's images),
//! `config.dump` (berthd's record of the container), `spec.dump` (the OCI
//! config.json) and `rootfs-diff.tar` (the writable layer). Written aside
//! and renamed into place, so a failure leaves no partial archive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// CRI's default when the kubelet gives no timeout (containerd's too).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);

/// The archive's location: absolute, in an existing folder, not a folder.
pub fn validate_location(location: &str) -> Result<PathBuf> {
    let p = PathBuf::from(location);
    if location.is_empty() || !p.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "checkpoint container: location {location:?} is not an absolute path"
        )));
    }
    let parent = p.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "checkpoint container: location {location:?}: folder {} does not exist",
            parent.display()
        )));
    }
    if p.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "checkpoint container: location {location:?} is a folder"
        )));
    }
    Ok(p)
}

/// Write the archive of a dump in `work` (holding `checkpoint/`) to
/// `location`: the dump, the two records, the writable layer `upper`.
pub fn write_archive(
    work: &Path,
    record_json: &[u8],
    spec: &Path,
    upper: &Path,
    location: &Path,
) -> std::io::Result<()> {
    let diff = work.join("rootfs-diff.tar");
    {
        let mut t = tar::Builder::new(std::fs::File::create(&diff)?);
        t.follow_symlinks(false);
        if upper.is_dir() {
            t.append_dir_all(".", upper)?;
        }
        t.finish()?;
    }
    let tmp = location.with_extension("berth-partial");
    let result = (|| {
        let mut t = tar::Builder::new(std::fs::File::create(&tmp)?);
        t.follow_symlinks(false);
        t.append_dir_all("checkpoint", work.join("checkpoint"))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(record_json.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        t.append_data(&mut h, "config.dump", record_json)?;
        t.append_path_with_name(spec, "spec.dump")?;
        t.append_path_with_name(&diff, "rootfs-diff.tar")?;
        t.into_inner()?.sync_all()?;
        std::fs::rename(&tmp, location)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("c.tar");
        assert_eq!(validate_location(ok.to_str().unwrap()).unwrap(), ok);
        for bad in [
            "",
            "rel/c.tar",
            "/no/such/folder/c.tar",
            d.path().to_str().unwrap(),
        ] {
            let e = validate_location(bad).unwrap_err().to_string();
            assert!(e.contains("location"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_archive_holds_the_dump_records_and_layer() {
        let d = tempfile::tempdir().unwrap();
        let work = d.path().join("work");
        std::fs::create_dir_all(work.join("checkpoint")).unwrap();
        std::fs::write(work.join("checkpoint/inventory.img"), b"img").unwrap();
        let upper = d.path().join("upper");
        std::fs::create_dir_all(upper.join("tmp")).unwrap();
        std::fs::write(upper.join("tmp/written"), b"x").unwrap();
        let spec = d.path().join("config.json");
        std::fs::write(&spec, b"{}").unwrap();
        let loc = d.path().join("out.tar");
        write_archive(&work, b"{\"id\":\"c\"}", &spec, &upper, &loc).unwrap();
        let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&loc).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        for want in [
            "checkpoint/inventory.img",
            "config.dump",
            "rootfs-diff.tar",
            "spec.dump",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(!loc.with_extension("berth-partial").exists());
    }
}
