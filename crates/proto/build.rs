//! Compiles `proto/switchyard/v1/*.proto` with `protox` (a pure-Rust protobuf compiler), so
//! building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("switchyard/v1/spoke.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    // Smaller per-call buffers than tonic's 8 KiB (src/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::ContractCodec")
        .compile_fds(fds)?;
    Ok(())
}
