//! Layer selection: indices, ranges, patterns, --skip, --max-rewrites.

use super::*;

fn three_layer_model() -> ModelProto {
    let mut b = ModelBuilder::new(13, 9);
    let mut x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    for _ in 0..3 {
        let d = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
        x = b.conv(&d, 4, 4, (1, 1), (1, 1), (0, 0), 1, false);
    }
    b.output(&x);
    b.build()
}

fn converted_indices(m: &ModelProto, layers: LayerSelection, skip: Vec<String>) -> fusec::Result<Vec<usize>> {
    use fusec::passes::fuse_depthwise::{FuseDepthwise, Options};
    let mut g = graph_of(m);
    let pass = FuseDepthwise::new(Options { variant: Variant::Half, init: Init::Center, assign: Default::default(), layers, skip, dense: false })?;
    let r = run_pipeline(&mut g, &[Box::new(pass)], &PassCx::default())?;
    Ok(r[0].1.rewrites.iter().map(|w| w.index).collect())
}

#[test]
fn layer_selection_by_index_range_pattern_and_skip() {
    let m = three_layer_model();
    assert_eq!(converted_indices(&m, LayerSelection::All, vec![]).unwrap(), vec![0, 1, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("0,2"), vec![]).unwrap(), vec![0, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("1-2"), vec![]).unwrap(), vec![1, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::All, vec!["1".into()]).unwrap(), vec![0, 2]);
    let names: Vec<String> = m.graph.as_ref().unwrap().node.iter().filter(|n| n.attribute.iter().any(|a| a.name() == "group" && a.i() == 4)).map(|n| n.name().to_string()).collect();
    assert_eq!(converted_indices(&m, LayerSelection::parse(&names[1]), vec![]).unwrap(), vec![1]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("Conv_*"), vec![names[2].clone()]).unwrap(), vec![0, 1]);
    let e = converted_indices(&m, LayerSelection::parse("5"), vec![]).unwrap_err().to_string();
    assert!(e.contains("out of range") && e.contains("3 depthwise"), "{e}");
    let e = converted_indices(&m, LayerSelection::parse("no-such-preset"), vec![]).unwrap_err().to_string();
    assert!(e.contains("preset") && e.contains("no-such-preset"), "{e}");
    let e = converted_indices(&m, LayerSelection::parse("nomatch*"), vec![]).unwrap_err().to_string();
    assert!(e.contains("matches no depthwise"), "{e}");
}

#[test]
fn max_rewrites_limits_the_pass() {
    let m = three_layer_model();
    let mut g = graph_of(&m);
    let r = run_pipeline(&mut g, &[fuse_pass(Variant::Half, Init::Center)], &PassCx { max_rewrites: Some(2), ..Default::default() }).unwrap();
    assert_eq!(r[0].1.rewrites.len(), 2);
}
