//! berthd's image store: one `berth_images::ImageStore` under
//! `<root_dir>/images`, with the registry mirrors of `registry_config_path`
//! (containerd's `certs.d/<host>/hosts.toml` layout). Shared by the
//! ImageService and the container manager.

use std::sync::Arc;

use berth_images::registry::hosts::HostsDir;
use berth_images::{ImageStore, StoreOptions};

use crate::config::Config;
use crate::error::{Error, Result};

/// Open (or create) the node's image store.
pub fn open(config: &Config) -> Result<Arc<ImageStore>> {
    let root = config.root_dir.join("images");
    let mut opts = StoreOptions::new(&root);
    opts.registry.hosts = HostsDir {
        dir: config.registry_config_path.clone().filter(|p| p.is_dir()),
        plain_http: vec![],
    };
    ImageStore::open(opts).map_err(|e| Error::Images {
        what: "open image store".into(),
        source: Box::new(e),
    })
}
