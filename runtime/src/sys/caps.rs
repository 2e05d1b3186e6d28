//! Capabilities: bounding drop, capset of effective/permitted/inheritable,
//! ambient raise. Inheritable is only what the spec lists (CVE-2022-29162).

use std::io;

use crate::config::CapSets;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The highest capability number the kernel knows.
pub fn last_cap() -> u32 {
    let mut last = 0;
    for c in 0..64 {
        // PR_CAPBSET_READ fails with EINVAL past the last capability.
        if super::prctl(libc::PR_CAPBSET_READ, c, 0).is_err() {
            break;
        }
        last = c as u32;
    }
    last
}

/// Drop from the bounding set every capability not in `bounding`.
pub fn drop_bounding(bounding: u64, last: u32) -> io::Result<()> {
    for c in 0..=last {
        if bounding & (1 << c) == 0 {
            super::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0).map_err(|e| {
                io::Error::new(e.kind(), format!("drop bounding capability {c}: {e}"))
            })?;
        }
    }
    Ok(())
}

pub fn capset(c: &CapSets) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: c.effective as u32,
            permitted: c.permitted as u32,
            inheritable: c.inheritable as u32,
        },
        CapData {
            effective: (c.effective >> 32) as u32,
            permitted: (c.permitted >> 32) as u32,
            inheritable: (c.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data words as capset(2) v3 expects, valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_ambient(ambient: u64, last: u32) -> io::Result<()> {
    super::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    for c in 0..=last {
        if ambient & (1 << c) != 0 {
            super::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                c as libc::c_ulong,
            )?;
        }
    }
    Ok(())
}

/// Apply all five sets for a process about to run as `uid`/`gid`.
/// Call with CAP_SETPCAP still held (before or after the id change with
/// PR_SET_KEEPCAPS, which `process::finalize` arranges).
pub fn apply(c: &CapSets, last: u32) -> io::Result<()> {
    let mask = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let c = CapSets {
        bounding: c.bounding & mask,
        effective: c.effective & mask,
        inheritable: c.inheritable & mask,
        permitted: c.permitted & mask,
        ambient: c.ambient & mask,
    };
    capset(&c)?;
    set_ambient(c.ambient, last)
}
