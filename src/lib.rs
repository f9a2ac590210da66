//! peapod: a pod runtime for Linux. One engine, thin front ends (see README).

pub mod cli;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod logging;
pub mod net;
pub mod oci;
pub mod pod;
pub mod shim;
pub mod sys;
