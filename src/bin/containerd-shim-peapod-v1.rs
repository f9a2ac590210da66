//! containerd's shim v2 for peapod (`runtime_type = "io.containerd.peapod.v1"`).
//! A single-threaded tokio runtime: the shim only waits on sockets, signals
//! and its children; the container work runs in the `peapod` CLI.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    peapod::shim::run().await;
}
