//! The training-time augmentations (warp, stroke, strips, elastic).

#[test]
fn warp_shifts_stretches_and_zooms_about_the_top_left_corner() {
    use fusec::train::batch::warp;
    // one channel, 2 rows, 12 columns; a ramp along x in row 0, a bright column at x = 2 in row 1
    let (h, w) = (2usize, 12usize);
    let mut src = vec![0.0f32; h * w];
    for x in 0..w {
        src[x] = x as f32;
    }
    src[w + 2] = 1.0;
    let mut dst = vec![f32::NAN; h * w];
    // shift only: whole pixels, zero where the source is outside
    warp(&src, &[1, h, w], 1, 3, (1.0, 1.0), &mut dst);
    assert!(dst[..w].iter().all(|&v| v == 0.0), "row 0 comes from row -1: {:?}", &dst[..w]);
    assert_eq!(&dst[w..w + 3], &[0.0, 0.0, 0.0]);
    assert_eq!(&dst[w + 3..2 * w], &src[..w - 3]);
    // stretch 2: dst[x] = src[x / 2], interpolated; the column at 2 lands at 4 with half-weight neighbours
    warp(&src, &[1, h, w], 0, 0, (1.0, 2.0), &mut dst);
    let row0: Vec<f32> = (0..w).map(|x| x as f32 / 2.0).collect();
    assert_eq!(&dst[..w], row0.as_slice());
    assert_eq!(&dst[w..w + 7], &[0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0]);
    // squeeze 0.5: dst[x] = src[2x], zero past the sample's end
    warp(&src, &[1, h, w], 0, 0, (1.0, 0.5), &mut dst);
    assert_eq!(&dst[..6], &[0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    assert!(dst[6..w].iter().all(|&v| v == 0.0));
    assert_eq!(&dst[w..w + 3], &[0.0, 1.0, 0.0]);
    // zoom 2 on both axes: row 1 is halfway between rows 0 and 1 (the column at 2 lands at 4)
    warp(&src, &[1, h, w], 0, 0, (2.0, 2.0), &mut dst);
    assert_eq!(&dst[..w], row0.as_slice());
    let mid: Vec<f32> = (0..w).map(|x| 0.5 * row0[x] + 0.5 * [0.0, 0.0, 0.0, 0.5, 1.0, 0.5][..].get(x).copied().unwrap_or(0.0)).collect();
    assert_eq!(&dst[w..2 * w], mid.as_slice());
}

#[test]
fn stroke_widens_or_thins_dark_strokes_by_one_pixel() {
    use fusec::train::batch::stroke;
    // one channel, 4 × 4, white with a dark pixel at (1, 1)
    let mut x = vec![1.0f32; 16];
    x[5] = -1.0;
    stroke(&mut x, &[1, 4, 4], true);
    let dark: Vec<usize> = (0..16).filter(|&i| x[i] < 0.0).collect();
    assert_eq!(dark, [0, 1, 4, 5], "the 2×2 windows that hold (1, 1) start at rows/columns 0 and 1");
    // thinning the 2×2 block brings it back to one pixel, at its top-left corner
    stroke(&mut x, &[1, 4, 4], false);
    let dark: Vec<usize> = (0..16).filter(|&i| x[i] < 0.0).collect();
    assert_eq!(dark, [0]);
}

#[test]
fn strips_are_a_permutation_of_column_runs_the_same_in_every_row_and_channel() {
    use fusec::train::batch::shuffle_strips;
    use rand::SeedableRng;
    // two channels, 3 rows, 200 columns; every value names its (channel, row, column)
    let (c, h, w) = (2usize, 3usize, 200usize);
    let src: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
    let mut moved = 0;
    for seed in 0..8 {
        let mut dst = vec![f32::NAN; c * h * w];
        shuffle_strips(&src, &[c, h, w], &mut rand::rngs::StdRng::seed_from_u64(seed), &mut dst);
        // the source column of each output column, read from row 0 of channel 0
        let from: Vec<usize> = (0..w).map(|x| dst[x] as usize).collect();
        let mut sorted = from.clone();
        sorted.sort();
        assert_eq!(sorted, (0..w).collect::<Vec<_>>(), "every column exactly once (seed {seed})");
        for row in 0..c * h {
            for x in 0..w {
                assert_eq!(dst[row * w + x], src[row * w + from[x]], "row {row} moves with row 0 (seed {seed})");
            }
        }
        // runs of consecutive source columns: the strips, 8 to 48 wide except the last one cut
        let mut runs = vec![1usize];
        for x in 1..w {
            if from[x] == from[x - 1] + 1 {
                *runs.last_mut().unwrap() += 1;
            } else {
                runs.push(1);
            }
        }
        assert!(runs.len() > 1, "{runs:?}");
        // a run may join strips that happen to stay adjacent, and the last strip may be short
        assert!(runs.iter().filter(|&&r| r < 8).count() <= 1, "at most the cut-off strip is narrower than 8: {runs:?}");
        moved += (from != (0..w).collect::<Vec<_>>()) as usize;
    }
    assert!(moved >= 7, "the strips change places");
}

#[test]
fn elastic_moves_no_pixel_further_than_its_amplitude_and_zero_is_the_identity() {
    use fusec::train::batch::elastic;
    use rand::SeedableRng;
    // two channels, 24 × 40, values unique per pixel and channel
    let (c, h, w) = (2usize, 24usize, 40usize);
    let src: Vec<f32> = (0..c * h * w).map(|i| ((i * 7919) % 1000) as f32).collect();
    let mut dst = vec![f32::NAN; c * h * w];
    elastic(&src, &[c, h, w], 0.0, 8, &mut rand::rngs::StdRng::seed_from_u64(1), &mut dst);
    assert_eq!(dst, src, "amplitude 0 leaves the sample as it is");
    // a ramp along x (channel 0) and along y (channel 1): the output is the source coordinate
    let mut ramp = vec![0.0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            ramp[y * w + x] = x as f32;
            ramp[h * w + y * w + x] = y as f32;
        }
    }
    let amp = 1.5f32;
    let mut moved = 0usize;
    for seed in 0..4 {
        elastic(&ramp, &[c, h, w], amp, 8, &mut rand::rngs::StdRng::seed_from_u64(seed), &mut dst);
        for y in 0..h {
            for x in 0..w {
                let (ux, uy) = (dst[y * w + x] - x as f32, dst[h * w + y * w + x] - y as f32);
                assert!(ux.abs() <= amp + 1e-4 && uy.abs() <= amp + 1e-4, "({y}, {x}) moved by ({uy}, {ux})");
                moved += (ux.abs() > 0.05 || uy.abs() > 0.05) as usize;
                // smooth: horizontal neighbours move alike (the field changes by at most 2·amp per grid step)
                if x >= 2 && x + 4 <= w {
                    let ux1 = dst[y * w + x + 1] - (x + 1) as f32;
                    assert!((ux1 - ux).abs() <= 2.0 * amp / 8.0 + 1e-4, "({y}, {x}): {ux} then {ux1}");
                }
            }
        }
    }
    assert!(moved > c * h * w, "the field moves most pixels: {moved}");
}
