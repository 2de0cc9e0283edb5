//! Loading and saving: lossless round trips, external data, and clear errors
//! on broken files.

mod common;

use common::*;
use fusec::onnx::{self, SaveOptions};
use prost::Message;

fn save_load(m: &onnx::Model, dir: &std::path::Path, name: &str) -> (std::path::PathBuf, onnx::Model) {
    let p = dir.join(name);
    onnx::save(m, &p, &SaveOptions::default()).unwrap();
    let back = onnx::load(&p).unwrap();
    (p, back)
}

#[test]
fn round_trip_without_a_pass_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    // a generated model and the real Paddle export
    let generated = Block { se: Some(true), ..Default::default() }.model(3);
    let gen_path = dir.path().join("gen.onnx");
    std::fs::write(&gen_path, generated.encode_to_vec()).unwrap();
    for src in [gen_path, testdata("ppocr_mobile_v2_cls.onnx")] {
        let original = std::fs::read(&src).unwrap();
        // the IR alone, no pass (loading for a command also folds shape computations)
        let model = onnx::load(&src).unwrap();
        let g = fusec::ir::Graph::from_proto(model.graph().unwrap(), model.opset()).unwrap();
        let mut m = model.clone();
        m.proto.graph = Some(g.to_proto().unwrap());
        let out = dir.path().join("rt.onnx");
        onnx::save(&m, &out, &SaveOptions { overwrite: true, ..Default::default() }).unwrap();
        let saved = std::fs::read(&out).unwrap();
        assert_eq!(saved, original, "{}: load → IR → save changed the bytes", src.display());
    }
}

#[test]
fn external_data_is_read_and_kept_external() {
    let dir = tempfile::tempdir().unwrap();
    let m = Block { kernel: Kernel::HalfExact, ..Default::default() }.model(2);
    // write the model with every initializer external
    let mut model = model_of(m.clone());
    model.external_tensors = m.graph.as_ref().unwrap().initializer.iter().map(|t| t.name().to_string()).collect();
    let (p, back) = save_load(&model, dir.path(), "ext.onnx");
    assert!(dir.path().join("ext.onnx.data").exists());
    let on_disk = onnx::ModelProto::decode(std::fs::read(&p).unwrap().as_slice()).unwrap();
    assert!(on_disk.graph.as_ref().unwrap().initializer.iter().all(|t| t.data_location == Some(1) && t.raw_data.is_none()));
    // loaded back: data resolved, and the same tensors remembered as external
    assert_eq!(back.external_tensors, model.external_tensors);
    let x = random_input(&[1, 3, 9, 11], 0);
    assert_close(&fusec::exec::run(&back.proto, &[x.clone()]).unwrap()[0], &fusec::exec::run(&m, &[x]).unwrap()[0], 0.0, 0.0, "external round trip");
    // converting keeps external data external
    let out = dir.path().join("conv.onnx");
    let opts = fusec::convert::ConvertOptions { variant: Some(fusec::passes::fuse_depthwise::Variant::Half), ..Default::default() };
    fusec::convert::convert_file(&p, &out, &opts, false).unwrap();
    assert!(dir.path().join("conv.onnx.data").exists());
    let conv = onnx::load(&out).unwrap();
    assert!(!conv.external_tensors.is_empty());
}

fn load_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.onnx");
    std::fs::write(&p, bytes).unwrap();
    match fusec::ir::load_graph(&p) {
        Ok(_) => panic!("loading {} bytes should fail", bytes.len()),
        Err(e) => {
            let s = e.to_string();
            assert!(s.contains("bad.onnx"), "error does not name the file: {s}");
            s
        }
    }
}

#[test]
fn broken_files_give_clear_errors() {
    assert!(load_err(b"").contains("empty"));
    load_err(b"this is a text file, not a model\n");
    let good = std::fs::read(testdata("ppocr_mobile_v2_cls.onnx")).unwrap();
    for cut in [1, 10, 100, 1000, good.len() / 2, good.len() - 1] {
        load_err(&good[..cut]);
    }
    let mut rng = 12345u64;
    let noise: Vec<u8> = (0..4096).map(|_| { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1); (rng >> 33) as u8 }).collect();
    load_err(&noise);
    // a valid protobuf that is not a model (a TensorProto)
    let t = fusec::onnx::tensor::Tensor::from_i64("t", &[2], &[1, 2]).into_proto();
    load_err(&t.encode_to_vec());
    // a model without a graph
    let m = onnx::ModelProto { ir_version: Some(8), ..Default::default() };
    assert!(load_err(&m.encode_to_vec()).contains("no graph"));
}

fn mutate(f: impl FnOnce(&mut onnx::ModelProto)) -> String {
    let mut m = Block::default().model(1);
    f(&mut m);
    load_err(&m.encode_to_vec())
}

#[test]
fn inconsistent_graphs_give_clear_errors() {
    let e = mutate(|m| m.graph.as_mut().unwrap().node[1].input[0] = "nowhere".into());
    assert!(e.contains("never produced") && e.contains("nowhere"), "{e}");
    let e = mutate(|m| { m.graph.as_mut().unwrap().initializer.remove(0); });
    assert!(e.contains("never produced"), "{e}");
    let e = mutate(|m| {
        let g = m.graph.as_mut().unwrap();
        let last = g.node.last().unwrap().output[0].clone();
        g.node[0].input[0] = last;
    });
    assert!(e.contains("cycle"), "{e}");
    let e = mutate(|m| m.graph.as_mut().unwrap().initializer[0].data_type = Some(99));
    assert!(e.contains("unknown data type"), "{e}");
    let e = mutate(|m| m.graph.as_mut().unwrap().initializer[0].dims.push(3));
    assert!(e.contains("raw_data has"), "{e}");
    let e = mutate(|m| m.graph.as_mut().unwrap().initializer[0].dims = vec![-4, 2]);
    assert!(e.contains("negative"), "{e}");
    let e = mutate(|m| m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20, 1 << 20]);
    assert!(e.contains("more than"), "{e}");
    let e = mutate(|m| m.opset_import[0].version = Some(3));
    assert!(e.contains("opset 3"), "{e}");
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for location in ["../../etc/passwd", "/etc/passwd", "missing.bin"] {
        let mut m = Block::default().model(1);
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = None;
        t.data_location = Some(1);
        t.external_data = vec![onnx::kv("location", location)];
        let p = dir.path().join("ext.onnx");
        std::fs::write(&p, m.encode_to_vec()).unwrap();
        let e = onnx::load(&p).unwrap_err().to_string();
        assert!(e.contains("refused") || e.contains("No such file"), "{location}: {e}");
    }
}

#[test]
fn streamed_save_equals_the_protobuf_encoding() {
    // large initializers take the streaming path; fill the fields around raw_data too
    let mut m = fusec::models::zoo::build("mobilenet-v1", 0).unwrap();
    m.doc_string = Some("doc".into());
    m.metadata_props.push(onnx::kv("k", "v"));
    let g = m.graph.as_mut().unwrap();
    g.doc_string = Some("graph doc".into());
    let big = g.initializer.iter_mut().find(|t| t.raw_data.as_ref().is_some_and(|r| r.len() > 100_000)).unwrap();
    big.doc_string = Some("tensor doc".into());
    big.metadata_props.push(onnx::kv("a", "b"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.onnx");
    onnx::save(&model_of(m.clone()), &p, &SaveOptions::default()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), m.encode_to_vec());
}

#[test]
fn models_over_the_size_limit_are_saved_with_external_data() {
    // the 2 GB limit, scaled down: a threshold of 100 kB makes the MobileNetV1 weights go external
    let m = fusec::models::zoo::build("mobilenet-v1", 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    onnx::save(&model_of(m.clone()), &p, &SaveOptions { overwrite: false, external_threshold: Some(100_000), ..Default::default() }).unwrap();
    let small = std::fs::metadata(&p).unwrap().len();
    let data = std::fs::metadata(dir.path().join("m.onnx.data")).unwrap().len();
    assert!(small < 100_000 && data > 16_000_000, "model {small} bytes, data {data} bytes");
    let back = onnx::load(&p).unwrap();
    let x = random_input(&[1, 3, 224, 224], 0);
    assert_close(&fusec::exec::run(&back.proto, &[x.clone()]).unwrap()[0], &fusec::exec::run(&m, &[x]).unwrap()[0], 0.0, 0.0, "external");
}
