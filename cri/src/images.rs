//! berthd's image store: one `berth_images::ImageStore` under
//! `<root_dir>/images`, with the registry mirrors of `registry_config_path`
//! (containerd's `certs.d/<host>/hosts.toml` layout) and the configured
//! `sandbox_image` pinned. Shared by the ImageService and the container
//! manager, which leases the snapshots of every container's image
//! (`ImageStore::lease`, holder = the container id) so that RemoveImage and
//! GC never take a running container's layers.

use std::path::PathBuf;
use std::sync::Arc;

use berth_images::registry::hosts::HostsDir;
use berth_images::{ImageRef, ImageStore, StoreOptions};

use crate::config::Config;
use crate::error::{Error, Result};

/// Where the image store lives: `<root_dir>/images`.
pub fn root(config: &Config) -> PathBuf {
    config.root_dir.join("images")
}

/// Open (or create) the node's image store.
pub fn open(config: &Config) -> Result<Arc<ImageStore>> {
    let mut opts = StoreOptions::new(&root(config));
    opts.registry.hosts = HostsDir {
        dir: config.registry_config_path.clone().filter(|p| p.is_dir()),
        plain_http: vec![],
    };
    let sandbox = ImageRef::parse(&config.sandbox_image).map_err(Error::Reference)?;
    opts.pinned = vec![sandbox];
    ImageStore::open(opts).map_err(|e| Error::Images {
        what: "open image store".into(),
        source: Box::new(e),
    })
}
