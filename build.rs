//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto`
//! with `protox` (pure Rust), so no system `protoc` is needed, and embeds
//! the pipelines and presets of `passes/`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=passes");
    let fds = protox::compile(["proto/onnx.proto"], ["proto/"])?;
    let mut cfg = prost_build::Config::new();
    // raw_data and other bytes fields borrow the read buffer instead of copying.
    cfg.bytes(["."]);
    cfg.compile_fds(fds)?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("passes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut src = String::from("pub static FILES: &[(&str, &str)] = &[\n");
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        let stem = f.file_stem().and_then(|s| s.to_str()).ok_or("bad file name in passes/")?;
        src.push_str(&format!("    ({stem:?}, include_str!({:?})),\n", f.display().to_string()));
    }
    src.push_str("];\n");
    std::fs::write(out.join("passes_files.rs"), src)?;
    Ok(())
}
