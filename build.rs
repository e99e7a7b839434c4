//! Compiles `proto/` with tonic-prost-build. protoc comes from `protoc-bin-vendored`, so a
//! fresh machine needs no system protoc; the descriptor set feeds server reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the env.
    unsafe { env::set_var("PROTOC", protoc) };
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        "proto/checkout/v1/types.proto",
        "proto/checkout/v1/checkout.proto",
        "proto/checkout/v1/hosted.proto",
        "proto/checkout/v1/admin.proto",
    ];
    tonic_prost_build::configure()
        // Decode failures are the client's fault: INVALID_ARGUMENT, not INTERNAL (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::CheckoutCodec")
        .file_descriptor_set_path(out.join("checkout_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    // Listing paths replaces cargo's default of rerunning on any change in the package, so
    // this script (its codec_path, say) must be listed too.
    println!("cargo:rerun-if-changed=build.rs");
    // embed_migrations! does not notice a new migration directory by itself.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}
