//! Every GPU operation against the CPU backend, in the spirit of llama.cpp's
//! test-backend-ops: each op x each weight type x odd shapes (rows not a multiple of any
//! workgroup, K not a multiple of 256 where the type allows, 1 token, the matrix-vector
//! limit, just past it, a 512-token batch), each with a stated tolerance.
//!
//! Matrix products are checked twice: against an f64 product of the reference-dequantized
//! weights (the decode must be exact; only f32 summation differs) and against
//! `compute::matmul` (which quantizes activations as ggml does; NMSE bound as
//! test-backend-ops' 5e-4).

mod common;

use common::{assert_close, data, dev, nmse};
use gpu::{kernels::WEIGHT_TYPES, DeviceOptions, GpuDevice, GpuWeights, Rows};
use quant::GgmlType;

/// Per output, `|gpu - ref| <= DOT_TOL * sum_k |w_k x_k|`: f32 summation error bound with
/// margin, far below what any decoding mistake gives.
const DOT_TOL: f64 = 2e-5;
/// test-backend-ops' bound for MUL_MAT against the CPU's quantized-activation product.
const CPU_NMSE: f64 = 5e-4;
/// The packed-dot path against the CPU: the same integer sums, so only f32 summation order
/// (and a rare activation rounded the other way at a tie of the reciprocal) differs.
const INT_DOT_NMSE: f64 = 1e-10;

/// Columns for `ty`: not a multiple of 256 where the block allows it, odd for floats.
fn cols_for(ty: GgmlType) -> usize {
    match ty.block_size() {
        1 => 333,
        32 => 416,
        _ => 512,
    }
}

/// Made-up blocks for the types ggml quantizes only with an importance matrix (IQ1_S, IQ1_M,
/// IQ2_XXS, IQ2_XS, IQ3_XXS), as quant's own tests make them: any bytes are a valid block,
/// so random ones reach every grid entry, sign pattern and scale; only the f16 scale `d` is
/// set, to 2^-10 (1 + m / 1024).
fn made_up_row(ty: GgmlType, seed: u64, row: &mut [u8]) {
    let noise = data(row.len(), seed);
    for (b, v) in row.iter_mut().zip(&noise) {
        *b = (v.to_bits() >> 5) as u8;
    }
    let block = ty.type_size();
    for (i, b) in row.chunks_exact_mut(block).enumerate() {
        let d = 0x1400 | ((seed as u16).wrapping_add(97 * i as u16) & 0x3ff);
        if ty == GgmlType::IQ1_M {
            // d's four nibbles in the top nibbles of the four scale words (bytes 48..56).
            for k in 0..4 {
                let hi = &mut b[49 + 2 * k];
                *hi = (*hi & 0x0f) | ((((d >> (4 * k)) & 15) as u8) << 4);
            }
        } else {
            b[..2].copy_from_slice(&d.to_le_bytes());
        }
    }
}

/// A `rows x cols` matrix of `ty` from random floats (or made-up blocks, see
/// [`made_up_row`]), its bytes and reference decode.
fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let src = data(rows * cols, seed);
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut bytes = vec![0u8; rows * rb];
    let mut deq = vec![0f32; rows * cols];
    let has_quantizer = quant::format(ty).is_some_and(|f| f.quantize.is_some());
    for r in 0..rows {
        let row = &mut bytes[r * rb..(r + 1) * rb];
        if has_quantizer {
            quant::quantize_row(ty, &src[r * cols..(r + 1) * cols], row).unwrap();
        } else {
            made_up_row(ty, seed * 1000 + r as u64, row);
        }
        quant::dequantize_row(ty, row, &mut deq[r * cols..(r + 1) * cols]).unwrap();
    }
    (bytes, deq)
}

fn gpu_matmul(d: &GpuDevice, w: &GpuWeights, x: &[f32], n: usize) -> Vec<f32> {
    let xt = d.upload(x);
    let yt = d.tensor(n * w.rows);
    let mut p = d.pass();
    p.matmul(w, Rows::new(&xt, w.cols), n, Rows::new(&yt, w.rows))
        .unwrap();
    d.submit(p);
    d.read(&yt)
}

/// Whether `d` multiplies `n` tokens of `ty` with packed 8-bit dot products.
fn int_dot_path(d: &GpuDevice, ty: GgmlType, n: usize) -> bool {
    d.uses_int_dot() && matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0) && n <= gpu::MATVEC_MAX_TOKENS
}

/// Rows of `cols` values quantized to Q8_0 and back, as the CPU backend quantizes
/// activations for Q8_0 and Q4_0 weights.
fn q8_round_trip(x: &[f32], cols: usize) -> Vec<f32> {
    let rb = GgmlType::Q8_0.row_bytes(cols as u64).unwrap() as usize;
    let mut bytes = vec![0u8; rb];
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        quant::quantize_row(GgmlType::Q8_0, src, &mut bytes).unwrap();
        quant::dequantize_row(GgmlType::Q8_0, &bytes, dst).unwrap();
    }
    out
}

fn check_matmul(ty: GgmlType, rows: usize, n: usize, d: &GpuDevice) {
    let cols = cols_for(ty);
    let (bytes, deq) = matrix(ty, rows, cols, 7 + rows as u64);
    let x = data(n * cols, 99 + n as u64);
    let w = d.upload_weights(ty, rows, cols, &bytes).unwrap();
    let got = gpu_matmul(d, &w, &x, n);
    // The packed-dot path multiplies 8-bit activations (as the CPU does): its reference
    // takes the activations through the CPU's Q8_0 round trip, and the same bound holds.
    let xref = if int_dot_path(d, ty, n) {
        q8_round_trip(&x, cols)
    } else {
        x.clone()
    };
    for t in 0..n {
        for r in 0..rows {
            let (wr, xr) = (&deq[r * cols..][..cols], &xref[t * cols..][..cols]);
            let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = wr
                .iter()
                .zip(xr)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let g = got[t * rows + r] as f64;
            assert!(
                (g - exact).abs() <= DOT_TOL * mag + 1e-30,
                "{ty} {rows}x{cols} n={n}: out[{t}][{r}] = {g}, f64 reference {exact} (magnitude {mag})"
            );
        }
    }
    let view = compute::WeightView::new(ty, rows, cols, &bytes).unwrap();
    let mut cpu = vec![0f32; n * rows];
    compute::matmul(&view, &x, n, &mut cpu, &mut Vec::new()).unwrap();
    let e = nmse(&got, &cpu);
    assert!(
        e <= CPU_NMSE,
        "{ty} {rows}x{cols} n={n}: NMSE {e:.2e} against the CPU backend"
    );
}

#[test]
fn matmul_decode_every_type() {
    let d = dev();
    for ty in WEIGHT_TYPES {
        for n in [1, 3, gpu::MATVEC_MAX_TOKENS] {
            check_matmul(ty, 67, n, d);
        }
    }
}

/// Where the adapter has subgroups (lavapipe does) the decode kernel sums with them; the
/// workgroup-memory fallback every other adapter runs is checked here on the same shapes.
#[test]
fn matmul_decode_without_subgroups() {
    let plain = GpuDevice::open_with(
        gpu::BackendKind::Any,
        DeviceOptions {
            no_subgroups: true,
            ..Default::default()
        },
    )
    .expect("a GPU adapter (see the other tests' message)");
    assert!(!plain.uses_subgroups());
    eprintln!("default device uses subgroups: {}", dev().uses_subgroups());
    for ty in WEIGHT_TYPES {
        for n in [1, gpu::MATVEC_MAX_TOKENS] {
            check_matmul(ty, 67, n, &plain);
        }
    }
}

/// Where the device has packed 8-bit dot products (lavapipe does), Q8_0 and Q4_0 decode
/// takes them (the checks above, against the Q8_0-rounded activations and the CPU); the f32
/// fallback every other device runs is checked here, with and without subgroups, and both
/// paths against the CPU with the NMSE each reaches printed.
#[test]
fn matmul_decode_int_dot_and_fallback() {
    let open = |no_int_dot, no_subgroups| {
        GpuDevice::open_with(
            gpu::BackendKind::Any,
            DeviceOptions {
                no_int_dot,
                no_subgroups,
                ..Default::default()
            },
        )
        .expect("a GPU adapter (see the other tests' message)")
    };
    let d = dev();
    eprintln!(
        "default device uses packed i8 dot products: {}",
        d.uses_int_dot()
    );
    assert_eq!(d.uses_int_dot(), d.adapter().int_dot);
    let plain_sg = open(false, true);
    assert_eq!(plain_sg.uses_int_dot(), d.adapter().int_dot);
    assert!(!open(true, false).uses_int_dot());
    for dv in [open(true, false), open(true, true), plain_sg] {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            for n in [1, 3, gpu::MATVEC_MAX_TOKENS] {
                check_matmul(ty, 67, n, &dv);
            }
        }
    }
    // Both paths against the CPU, on a wider matrix (4096 columns, 128 blocks per row).
    let fallback = open(true, false);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let (rows, cols, n) = (96, 4096, 3);
        let (bytes, _) = matrix(ty, rows, cols, 17);
        let x = data(n * cols, 18);
        let view = compute::WeightView::new(ty, rows, cols, &bytes).unwrap();
        let mut cpu = vec![0f32; n * rows];
        compute::matmul(&view, &x, n, &mut cpu, &mut Vec::new()).unwrap();
        for (name, dv) in [("default", d), ("f32 fallback", &fallback)] {
            let w = dv.upload_weights(ty, rows, cols, &bytes).unwrap();
            let got = gpu_matmul(dv, &w, &x, n);
            let e = nmse(&got, &cpu);
            eprintln!(
                "{ty} {rows}x{cols} n={n} {name} (int dot {}): NMSE {e:.2e} against the CPU",
                dv.uses_int_dot()
            );
            let bound = if int_dot_path(dv, ty, n) {
                INT_DOT_NMSE
            } else {
                CPU_NMSE
            };
            assert!(e <= bound, "{ty} {name}: NMSE {e:.2e} above {bound:.0e}");
        }
    }
}

#[test]
fn matmul_prefill_every_type() {
    let d = dev();
    for ty in WEIGHT_TYPES {
        check_matmul(ty, 45, gpu::MATVEC_MAX_TOKENS + 1, d);
        check_matmul(ty, 70, 512, d);
    }
}

/// Rows read and written through offsets and strides (a fused QKV output, one sequence's
/// rows of a batch): the same products, and nothing outside the rows touched.
#[test]
fn matmul_strided_rows() {
    let d = dev();
    for ty in [GgmlType::Q4_K, GgmlType::F16, GgmlType::Q8_0] {
        let (rows, cols) = (37, cols_for(ty));
        let (bytes, _) = matrix(ty, rows, cols, 21);
        let w = d.upload_weights(ty, rows, cols, &bytes).unwrap();
        for n in [3, 40] {
            let (xs, ys) = (cols + 7, rows + 5);
            let x = data(3 + n * xs, 22);
            let xt = d.upload(&x);
            let sentinel = vec![7.5f32; 2 + n * ys];
            let yt = d.upload(&sentinel);
            let got = run(d, &yt, |p| {
                p.matmul(&w, Rows::new(&xt, xs).at(3), n, Rows::new(&yt, ys).at(2))
                    .unwrap()
            });
            let dense: Vec<f32> = (0..n)
                .flat_map(|t| x[3 + t * xs..][..cols].to_vec())
                .collect();
            let want = gpu_matmul(d, &w, &dense, n);
            for t in 0..n {
                assert_eq!(
                    &got[2 + t * ys..][..rows],
                    &want[t * rows..][..rows],
                    "{ty} n={n}"
                );
                if t + 1 < n {
                    assert!(got[2 + t * ys + rows..][..ys - rows]
                        .iter()
                        .all(|&v| v == 7.5));
                }
            }
            assert_eq!(&got[..2], &[7.5, 7.5]);
        }
    }
}

/// A matrix split across bindings gives the bits of the unsplit one, on both kernels, and
/// the embedding lookup reads rows from every binding.
#[test]
fn weights_split_across_bindings() {
    let small = GpuDevice::open_with(
        gpu::BackendKind::Any,
        DeviceOptions {
            max_binding: Some(4096),
            ..Default::default()
        },
    )
    .expect("a GPU adapter (see the other tests' message)");
    let d = dev();
    for ty in [GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16] {
        let (rows, cols) = (100, cols_for(ty));
        let (bytes, deq) = matrix(ty, rows, cols, 3);
        let whole = d.upload_weights(ty, rows, cols, &bytes).unwrap();
        let split = small.upload_weights(ty, rows, cols, &bytes).unwrap();
        assert_eq!(whole.bindings(), 1);
        assert!(split.bindings() >= 3, "{ty}: {} bindings", split.bindings());
        for n in [2, 40] {
            let x = data(n * cols, 5);
            assert_eq!(
                gpu_matmul(d, &whole, &x, n),
                gpu_matmul(&small, &split, &x, n),
                "{ty} n={n}"
            );
        }
        let ids = [0u32, 99, 57, 31];
        let it = small.upload_u32(&ids);
        let y = small.tensor(ids.len() * cols);
        let mut p = small.pass();
        p.get_rows(&split, &it, ids.len(), Rows::new(&y, cols))
            .unwrap();
        small.submit(p);
        let got = small.read(&y);
        for (t, &id) in ids.iter().enumerate() {
            let want = &deq[id as usize * cols..][..cols];
            assert_close(
                &format!("{ty} split get_rows"),
                &got[t * cols..][..cols],
                want,
                1e-6,
            );
        }
    }
}

/// Embedding lookup decodes rows exactly as the reference dequantizer (f32 products).
#[test]
fn get_rows_every_type() {
    let d = dev();
    for ty in WEIGHT_TYPES {
        let (rows, cols) = (37, cols_for(ty));
        let (bytes, deq) = matrix(ty, rows, cols, 11);
        let w = d.upload_weights(ty, rows, cols, &bytes).unwrap();
        let ids = [5u32, 0, 36, 5, 17];
        let it = d.upload_u32(&ids);
        let y = d.tensor(ids.len() * cols);
        let mut p = d.pass();
        p.get_rows(&w, &it, ids.len(), Rows::new(&y, cols)).unwrap();
        d.submit(p);
        let got = d.read(&y);
        for (t, &id) in ids.iter().enumerate() {
            let mut cpu = vec![0f32; cols];
            let view = compute::WeightView::new(ty, rows, cols, &bytes).unwrap();
            compute::get_rows(&view, id as usize, &mut cpu).unwrap();
            assert_eq!(&cpu[..], &deq[id as usize * cols..][..cols]);
            assert_close(
                &format!("{ty} get_rows"),
                &got[t * cols..][..cols],
                &cpu,
                1e-6,
            );
        }
    }
}

#[test]
fn unsupported_types_and_bad_shapes_are_errors() {
    let d = dev();
    // An activation tensor past the adapter's binding limit is an error, not a device panic.
    let big = d.tensor((d.binding_limit() / 4 + 1024) as usize);
    let e = d.pass().scale(&big, 2.0, big.len()).err().unwrap();
    assert!(e.to_string().contains("binding limit"), "{e}");
    drop(big);
    let e = d
        .upload_weights(GgmlType::Q8_1, 1, 32, &[0; 36])
        .err()
        .unwrap();
    assert!(e.to_string().contains("no GPU kernel"), "{e}");
    let e = d
        .upload_weights(GgmlType::Q4_0, 2, 32, &[0; 18])
        .err()
        .unwrap();
    assert!(e.to_string().contains("expected 36"), "{e}");
    let w = d.upload_weights(GgmlType::Q4_0, 2, 32, &[0; 36]).unwrap();
    let (x, y) = (d.tensor(31), d.tensor(2));
    let e = d
        .pass()
        .matmul(&w, Rows::new(&x, 32), 1, Rows::new(&y, 2))
        .err()
        .unwrap();
    assert!(e.to_string().contains("matmul input"), "{e}");
}

/// Runs `f` on a pass and returns the tensor `out` afterwards.
fn run(d: &GpuDevice, out: &gpu::GpuTensor, f: impl FnOnce(&mut gpu::Pass)) -> Vec<f32> {
    let mut p = d.pass();
    f(&mut p);
    d.submit(p);
    d.read(out)
}

/// RMSNorm and LayerNorm against `compute` (which sums squares in f64): rows not a multiple
/// of the workgroup, with and without weight and bias. Tolerance 1e-5 of the largest output.
#[test]
fn norms_match_cpu() {
    let d = dev();
    for (n, rows) in [(1000, 5), (64, 1), (2051, 3), (576, 512)] {
        let x = data(n * rows, 1);
        let w: Vec<f32> = data(n, 2).iter().map(|v| 1.0 + v).collect();
        let b = data(n, 3);
        let (xt, wt, bt, y) = (d.upload(&x), d.upload(&w), d.upload(&b), d.tensor(n * rows));
        for weight in [false, true] {
            let got = run(d, &y, |p| {
                p.rms_norm(&xt, weight.then_some(&wt), 1e-5, n, rows, &y)
                    .unwrap()
            });
            let mut want = vec![0f32; n * rows];
            if weight {
                compute::rms_norm(&x, Some(&w), 1e-5, &mut want).unwrap();
            } else {
                want.copy_from_slice(&x);
                for r in want.chunks_mut(n) {
                    compute::rms_norm_in_place(r, None, 1e-5).unwrap();
                }
            }
            assert_close(
                &format!("rms_norm {rows}x{n} w={weight}"),
                &got,
                &want,
                1e-5,
            );
        }
        for bias in [false, true] {
            let got = run(d, &y, |p| {
                p.layer_norm(&xt, Some(&wt), bias.then_some(&bt), 1e-5, n, rows, &y)
                    .unwrap()
            });
            let mut want = x.clone();
            compute::layer_norm(&mut want, &w, bias.then_some(&b[..]), 1e-5).unwrap();
            assert_close(
                &format!("layer_norm {rows}x{n} b={bias}"),
                &got,
                &want,
                1e-5,
            );
        }
    }
}

/// Rope in both pair layouts, full and partial rotation, on rows with a stride (a fused QKV
/// row) against `compute::Rope` with the host-made cos/sin table. Tolerance 1e-5.
#[test]
fn rope_norm_and_neox_match_cpu() {
    let d = dev();
    let (n, heads, hd) = (7, 3, 64);
    let stride = heads * hd + 40;
    for (mode, neox) in [
        (compute::RopeMode::Norm, false),
        (compute::RopeMode::Neox, true),
    ] {
        for n_rot in [64, 32] {
            let mut rope = compute::Rope::new(mode, n_rot, 10000.0);
            rope.freq_scale = 0.5;
            let x = data(n * stride, 4);
            let mut table = vec![0f32; n * n_rot];
            let mut want = x.clone();
            for t in 0..n {
                let pos = 100 + 37 * t;
                rope.fill_cache(pos, &mut table[t * n_rot..][..n_rot]);
                let row = &mut want[t * stride + 20..][..heads * hd];
                rope.apply_cached(row, heads, hd, &table[t * n_rot..][..n_rot]);
            }
            let (yt, tt) = (d.upload(&x), d.upload(&table));
            let args = gpu::RopeArgs {
                n_heads: heads,
                head_dim: hd,
                n_rot,
                neox,
            };
            let got = run(d, &yt, |p| {
                p.rope(
                    Rows::new(&yt, stride).at(20),
                    n,
                    Rows::new(&tt, n_rot),
                    args,
                )
                .unwrap()
            });
            assert_close(&format!("rope {mode:?} n_rot={n_rot}"), &got, &want, 1e-5);
        }
    }
}

/// SwiGLU (tolerance 1e-5) and GeGLU (1e-3: the CPU reads GELU from ggml's f16 table).
#[test]
fn glu_matches_cpu() {
    let d = dev();
    let n = 10_001;
    let gate: Vec<f32> = data(n, 5).iter().map(|v| v * 6.0).collect();
    let up = data(n, 6);
    let ut = d.upload(&up);
    for (name, tol) in [("swiglu", 1e-5), ("geglu", 1e-3)] {
        let gt = d.upload(&gate);
        let got = run(d, &gt, |p| {
            if name == "swiglu" {
                p.swiglu(&gt, &ut, n).unwrap()
            } else {
                p.geglu(&gt, &ut, n).unwrap()
            }
        });
        let mut want = gate.clone();
        if name == "swiglu" {
            compute::swiglu(&mut want, &up);
        } else {
            compute::geglu(&mut want, &up);
        }
        assert_close(name, &got, &want, tol);
    }
}

/// add, add_bias, scale and soft-cap: 1e-6 (one or two f32 operations each).
#[test]
fn elementwise_match_cpu() {
    let d = dev();
    let n = 3 * 777;
    let (a, b, bias) = (data(n, 7), data(n, 8), data(777, 9));
    let (bt, biast) = (d.upload(&b), d.upload(&bias));
    let at = d.upload(&a);
    let got = run(d, &at, |p| p.add(&at, &bt, n).unwrap());
    let mut want = a.clone();
    compute::add_in_place(&mut want, &b);
    assert_close("add", &got, &want, 1e-6);

    let at = d.upload(&a);
    let got = run(d, &at, |p| p.add_bias(&at, &biast, n).unwrap());
    let mut want = a.clone();
    compute::add_bias(&mut want, &bias);
    assert_close("add_bias", &got, &want, 1e-6);

    let big: Vec<f32> = a.iter().map(|v| v * 80.0).collect();
    let at = d.upload(&big);
    let got = run(d, &at, |p| {
        p.scale(&at, 0.37, n).unwrap();
        p.softcap(&at, 30.0, n).unwrap();
    });
    let mut want = big.clone();
    compute::scale(&mut want, 0.37);
    compute::softcap(&mut want, 30.0);
    assert_close("scale + softcap", &got, &want, 1e-6);
}

/// The forms the decoder uses: GLU over a fused `[gate | up]` row (one tensor, two spans),
/// an in-place norm over per-head rows, and plain GELU (1e-3: ggml's f16 table on the CPU).
#[test]
fn fused_glu_in_place_norm_and_gelu() {
    let d = dev();
    let (n, ff) = (5, 300);
    let both: Vec<f32> = data(n * 2 * ff, 12).iter().map(|v| v * 4.0).collect();
    let t = d.upload(&both);
    let spans = Rows::new(&t, 2 * ff);
    let got = run(d, &t, |p| {
        p.glu(
            compute::backend::GluKind::SwiGlu,
            spans,
            spans.at(ff),
            ff,
            n,
        )
        .unwrap()
    });
    for r in 0..n {
        let mut gate = both[r * 2 * ff..][..ff].to_vec();
        compute::swiglu(&mut gate, &both[r * 2 * ff + ff..][..ff]);
        assert_close("fused swiglu", &got[r * 2 * ff..][..ff], &gate, 1e-5);
        assert_eq!(
            &got[r * 2 * ff + ff..][..ff],
            &both[r * 2 * ff + ff..][..ff]
        );
    }

    let (heads, hd) = (12, 64);
    let x = data(heads * hd, 13);
    let w: Vec<f32> = data(hd, 14).iter().map(|v| 1.0 + v).collect();
    let (xt, wt) = (d.upload(&x), d.upload(&w));
    let got = run(d, &xt, |p| {
        p.rms_norm(&xt, Some(&wt), 1e-6, hd, heads, &xt).unwrap()
    });
    let mut want = x.clone();
    compute::rms_norm_in_place(&mut want, Some(&w), 1e-6).unwrap();
    assert_close("in-place rms_norm", &got, &want, 1e-5);
    let xt = d.upload(&x);
    let got = run(d, &xt, |p| {
        p.layer_norm(&xt, Some(&wt), None, 1e-6, hd, heads, &xt)
            .unwrap()
    });
    let mut want = x.clone();
    compute::layer_norm(&mut want, &w, None, 1e-6).unwrap();
    assert_close("in-place layer_norm", &got, &want, 1e-5);

    let g: Vec<f32> = data(4099, 15).iter().map(|v| v * 12.0).collect();
    let gt = d.upload(&g);
    let got = run(d, &gt, |p| p.gelu(&gt, g.len()).unwrap());
    let mut want = g.clone();
    compute::gelu(&mut want);
    assert_close("gelu", &got, &want, 1e-3);
}
