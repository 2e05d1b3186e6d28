//! Device access rules on cgroup v2: an eBPF program
//! (`BPF_PROG_TYPE_CGROUP_DEVICE`) that answers, for each access, what the
//! v1 `devices.allow` / `devices.deny` list would have answered.
//!
//! The rules are the spec's `linux.resources.devices` in order, then the
//! default devices and the `linux.devices` nodes (allowed), exactly the
//! list v1 writes. A type-`a` wildcard rule resets the list and sets the
//! default (allow or deny everything); every other rule is kept, and the
//! program checks them last to first: the last rule that matches decides,
//! else the default. An allow rule matches when it grants every requested
//! access bit, a deny rule when it names any of them.

use std::path::Path;

use super::{CgroupError, io_err};
use crate::config::spec::DeviceCgroup;

const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

/// One kept rule; `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

/// The rule list the program enforces, and its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    pub rules: Vec<Rule>,
}

fn access_bits(a: &str) -> u32 {
    a.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

fn kind_of(k: &str) -> Option<Option<u32>> {
    match k {
        "" | "a" => Some(None),
        "b" => Some(Some(DEV_BLOCK)),
        "c" => Some(Some(DEV_CHAR)),
        _ => None,
    }
}

/// Builds the policy: the spec's rules, then `allowed` ("c 1:3 rwm", as
/// v1 writes them: defaults and `linux.devices`).
pub fn policy(spec: &[DeviceCgroup], allowed: &[String]) -> Result<Policy, CgroupError> {
    // A new cgroup starts as its parent: everything allowed on the host.
    let mut p = Policy {
        default_allow: true,
        rules: Vec::new(),
    };
    let num = |v: Option<i64>| v.filter(|v| *v >= 0).map(|v| v as u32);
    let mut add =
        |allow: bool, kind: Option<u32>, major: Option<u32>, minor: Option<u32>, access: u32| {
            if kind.is_none() && major.is_none() && minor.is_none() {
                // "a": the whole list is replaced by a default.
                p.default_allow = allow;
                p.rules.clear();
            } else {
                p.rules.push(Rule {
                    allow,
                    kind,
                    major,
                    minor,
                    access,
                });
            }
        };
    for d in spec {
        let kind = kind_of(d.kind.as_deref().unwrap_or("a")).ok_or_else(|| {
            CgroupError::Unsupported(format!("device rule type {:?} (want a, b or c)", d.kind))
        })?;
        let access = match d.access.as_deref() {
            None | Some("") => ACC_READ | ACC_WRITE | ACC_MKNOD,
            Some(a) => access_bits(a),
        };
        // Type "a" means every device whatever the numbers, as in v1.
        let (major, minor) = match kind {
            None => (None, None),
            Some(_) => (num(d.major), num(d.minor)),
        };
        add(d.allow, kind, major, minor, access);
    }
    for s in allowed {
        let bad = || CgroupError::Unsupported(format!("device rule {s:?}"));
        let mut it = s.split_whitespace();
        let (Some(k), Some(mm), Some(a)) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let kind = kind_of(k).ok_or_else(bad)?;
        let (ma, mi) = mm.split_once(':').ok_or_else(bad)?;
        let n = |x: &str| -> Result<Option<u32>, CgroupError> {
            if x == "*" {
                Ok(None)
            } else {
                x.parse().map(Some).map_err(|_| bad())
            }
        };
        add(true, kind, n(ma)?, n(mi)?, access_bits(a));
    }
    Ok(p)
}

// eBPF encoding (linux/bpf.h), only what the program needs.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const AND64_IMM: u8 = 0x57;
const RSH64_IMM: u8 = 0x77;
const JNE_IMM: u8 = 0x55;
const JEQ_IMM: u8 = 0x15;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let b = [
        code,
        (src << 4) | (dst & 0xf),
        off.to_le_bytes()[0],
        off.to_le_bytes()[1],
        imm.to_le_bytes()[0],
        imm.to_le_bytes()[1],
        imm.to_le_bytes()[2],
        imm.to_le_bytes()[3],
    ];
    u64::from_le_bytes(b)
}

/// The program: r2 = type, r3 = access, r4 = major, r5 = minor (from
/// `struct bpf_cgroup_dev_ctx`), then one block per rule, last rule
/// first, each jumping past itself on a mismatch; the default last.
pub fn program(p: &Policy) -> Vec<u64> {
    let mut out = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV64_REG, 3, 2, 0, 0),
        insn(AND64_IMM, 2, 0, 0, 0xffff),
        insn(RSH64_IMM, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in p.rules.iter().rev() {
        // (code, dst, imm) of each mismatch jump, before the verdict.
        let mut checks: Vec<(u8, u8, i32)> = Vec::new();
        let mut pre: Vec<u64> = Vec::new();
        if let Some(k) = r.kind {
            checks.push((JNE_IMM, 2, k as i32));
        }
        if let Some(m) = r.major {
            checks.push((JNE_IMM, 4, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((JNE_IMM, 5, m as i32));
        }
        // Access: r6 = r3 & mask; allow needs no bit outside the rule's,
        // deny needs some bit inside.
        let (mask, code) = if r.allow {
            (!r.access & 7, JNE_IMM)
        } else {
            (r.access, JEQ_IMM)
        };
        pre.push(insn(MOV64_REG, 6, 3, 0, 0));
        pre.push(insn(AND64_IMM, 6, 0, 0, mask as i32));
        let n_checks = checks.len() + 1;
        // Block: checks..., mov r6, and r6, access jump, mov r0, exit.
        let block_len = checks.len() + pre.len() + 1 + 2;
        let mut at = 0usize;
        for (c, dst, imm) in checks {
            at += 1;
            out.push(insn(c, dst, 0, (block_len - at) as i16, imm));
        }
        out.extend(pre);
        at += 2 + 1;
        out.push(insn(code, 6, 0, (block_len - at) as i16, 0));
        debug_assert_eq!(n_checks + 2, at);
        out.push(insn(MOV64_IMM, 0, 0, 0, i32::from(r.allow)));
        out.push(insn(EXIT, 0, 0, 0, 0));
    }
    out.push(insn(MOV64_IMM, 0, 0, 0, i32::from(p.default_allow)));
    out.push(insn(EXIT, 0, 0, 0, 0));
    out
}

/// Loads the program for `p` and makes it the cgroup's only device filter
/// (attached first, the old ones detached after, so no access is ever
/// allowed that either the old or the new rules deny).
pub fn apply(cgroup: &Path, p: &Policy) -> Result<(), CgroupError> {
    use std::os::fd::AsFd;
    let dir = std::fs::File::open(cgroup).map_err(io_err("open", cgroup))?;
    let prog = crate::sys::bpf::load_device_program(&program(p))
        .map_err(io_err("load the device eBPF program for", cgroup))?;
    let old = crate::sys::bpf::attached_device_programs(dir.as_fd())
        .map_err(io_err("query device programs of", cgroup))?;
    crate::sys::bpf::attach_device_program(dir.as_fd(), prog.as_fd())
        .map_err(io_err("attach the device eBPF program to", cgroup))?;
    for o in old {
        crate::sys::bpf::detach_device_program(dir.as_fd(), o.as_fd())
            .map_err(io_err("detach an old device program from", cgroup))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the generated program the way the kernel would, for the
    /// instructions it uses.
    fn run(prog: &[u64], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let b = prog[pc].to_le_bytes();
            let (code, dst, src) = (b[0], (b[1] & 0xf) as usize, (b[1] >> 4) as usize);
            let off = i16::from_le_bytes([b[2], b[3]]);
            let imm = i32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64 as u64;
            pc += 1;
            match code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[off as usize / 4]);
                }
                MOV64_IMM => r[dst] = imm,
                MOV64_REG => r[dst] = r[src],
                AND64_IMM => r[dst] &= imm,
                RSH64_IMM => r[dst] >>= imm,
                JNE_IMM if r[dst] != imm => pc = (pc as i64 + i64::from(off)) as usize,
                JEQ_IMM if r[dst] == imm => pc = (pc as i64 + i64::from(off)) as usize,
                JNE_IMM | JEQ_IMM => {}
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, kind: &str, major: i64, minor: i64, access: &str) -> DeviceCgroup {
        DeviceCgroup {
            allow,
            kind: Some(kind.into()),
            major: Some(major),
            minor: Some(minor),
            access: Some(access.into()),
        }
    }

    #[test]
    fn deny_all_then_defaults_allows_only_listed_devices() {
        let spec = [rule(false, "a", -1, -1, "rwm")];
        let allowed: Vec<String> = ["c 1:3 rwm", "c *:* m", "c 136:* rwm", "b 8:0 r"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = policy(&spec, &allowed).unwrap();
        assert!(!p.default_allow);
        let prog = program(&p);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&prog, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&prog, DEV_CHAR, rw, 1, 5), 0, "/dev/zero not listed");
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_MKNOD, 10, 200),
            1,
            "mknod of any char"
        );
        assert_eq!(run(&prog, DEV_CHAR, rw, 136, 7), 1, "a pty slave");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_WRITE, 8, 0), 0, "read only");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), 0, "no block mknod");
    }

    #[test]
    fn later_rules_win_and_allow_all_resets() {
        let spec = [
            rule(false, "a", -1, -1, "rwm"),
            rule(true, "c", 1, 5, "rwm"),
            rule(false, "c", 1, 5, "w"),
        ];
        let p = policy(&spec, &[]).unwrap();
        let prog = program(&p);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_WRITE, 1, 5),
            0,
            "the later deny of w"
        );
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 9), 0);
        let p = policy(&[rule(true, "a", 5, 5, "rwm")], &[]).unwrap();
        assert_eq!(
            p,
            Policy {
                default_allow: true,
                rules: vec![]
            }
        );
        assert_eq!(run(&program(&p), DEV_BLOCK, 7, 8, 1), 1);
        assert!(policy(&[rule(true, "x", 1, 1, "r")], &[]).is_err());
    }
}
