//! CRI ImageService (backed by berth-images once it lands: issue 4/5).

use super::unimplemented_rpcs;

use std::sync::Arc;

use berth_images::ImageStore;

use crate::config::Config;

pub struct ImageService {
    #[allow(dead_code)]
    config: Arc<Config>,
    #[allow(dead_code)]
    store: Arc<ImageStore>,
}

impl ImageService {
    pub fn new(config: Arc<Config>, store: Arc<ImageStore>) -> Self {
        ImageService { config, store }
    }
}

#[tonic::async_trait]
impl k8s_cri::v1::image_service_server::ImageService for ImageService {
    unimplemented_rpcs! {
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        remove_image(RemoveImageRequest) -> RemoveImageResponse;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
    }
}
