//! Static pods: the kubelet's manifest folder without a kubelet. `peapod
//! static` runs a pod for every manifest in a folder, replaces it when the file
//! changes and removes it when the file goes.

pub mod config;
pub mod daemon;
pub mod error;
pub mod plan;
pub mod source;

pub use error::StaticError;
pub use source::FILE_ANNOTATION;
