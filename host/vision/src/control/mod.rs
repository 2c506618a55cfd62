//! Control maps for the diffusion ControlNets: Canny edges, the InstantID keypoint image and depth.

pub mod canny;
pub mod depth;
pub mod keypoints;

pub use canny::{auto_thresholds, canny, canny_gray, to_gray};
pub use depth::DepthEstimator;
pub use keypoints::keypoint_image;
