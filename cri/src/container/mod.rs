//! CRI containers: the OCI spec built from the CRI config and the image,
//! the rootfs, and the lifecycle through the pod's berth-shim.

pub mod seccomp;
