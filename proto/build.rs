//! Generates the gRPC service `concurrent.v1.Scheduler` when the `grpc` feature is on, with the
//! `protoc` shipped by `protoc-bin-vendored` (no system protoc needed).

fn main() {
    println!("cargo:rerun-if-changed=concurrent/v1/scheduler.proto");
    #[cfg(feature = "grpc")]
    generate();
}

#[cfg(feature = "grpc")]
fn generate() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored ships protoc for this platform");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("scheduler_descriptor.bin"))
        .compile_with_config(config, &["concurrent/v1/scheduler.proto"], &["."])
        .expect("concurrent/v1/scheduler.proto compiles");
}
