//! The operations mixtures of experts and latent attention add to the backend seam, GPU
//! against the CPU backend (`compute::backend::Cpu`), through the trait both implement:
//! products with stacked matrices chosen per row (experts and per-head matrices in their
//! GGUF types, odd shapes, 1 token and batches), the router (every gating, selection bias,
//! groups, normalisation, scaling), the weighted sum of a token's experts, sigmoid, row
//! copies and the latent KV cache. Each with its stated tolerance.

mod common;

use common::{assert_close, data, dev, max_rel, nmse};
use compute::backend::{Backend, Cpu, Span};
use compute::moe::{Gating, Router};
use compute::{AttnParams, KvDtype};
use gpu::{DeviceOptions, GpuBackend, GpuDevice};
use quant::GgmlType;

/// Per output, `|gpu - ref| <= DOT_TOL * sum_k |w_k x_k|` against the f64 product of the
/// reference-dequantized weights (as `ops.rs`: only f32 summation differs).
const DOT_TOL: f64 = 2e-5;
/// test-backend-ops' bound for MUL_MAT_ID against the CPU's quantized-activation product.
const CPU_NMSE: f64 = 5e-4;

/// Expert types: floats, the 32-blocks, K-quants and IQ types (IQ2_XXS from made-up blocks:
/// ggml quantizes it only with an importance matrix).
const TYPES: [GgmlType; 9] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::IQ2_XXS,
];

fn cols_for(ty: GgmlType) -> usize {
    match ty.block_size() {
        1 => 333,
        32 => 416,
        _ => 512,
    }
}

/// `rows` rows of `ty` (random floats quantized, or random blocks with a small f16 scale for
/// the types without a plain quantizer), their bytes and reference decode.
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
            let noise = data(row.len(), seed * 1000 + r as u64);
            for (b, v) in row.iter_mut().zip(&noise) {
                *b = (v.to_bits() >> 5) as u8;
            }
            for (i, b) in row.chunks_exact_mut(ty.type_size()).enumerate() {
                let d = 0x1400u16 | ((r as u16).wrapping_add(97 * i as u16) & 0x3ff);
                b[..2].copy_from_slice(&d.to_le_bytes());
            }
        }
        quant::dequantize_row(ty, row, &mut deq[r * cols..(r + 1) * cols]).unwrap();
    }
    (bytes, deq)
}

fn ids_tensor<B: Backend>(b: &B, ids: &[u32]) -> B::Tensor {
    let t = b.tensor(ids.len());
    b.write_ids(&t, ids).unwrap();
    t
}

/// `matmul_id` of a stack on backend `b`: rows of `y` (stride `rows + 2`, from 1).
#[allow(clippy::too_many_arguments)]
fn run_matmul_id<B: Backend>(
    b: &B,
    w: &B::Weights,
    ids: &[u32],
    x: &[f32],
    (cols, rows): (usize, usize),
    per: usize,
) -> Vec<f32> {
    let n = ids.len();
    let it = ids_tensor(b, ids);
    // Input rows strided (cols + 3 apart from 2) as a head's block of a wider row.
    let inputs = n.div_ceil(per);
    let mut xs = vec![0f32; 2 + inputs * (cols + 3)];
    for t in 0..inputs {
        xs[2 + t * (cols + 3)..][..cols].copy_from_slice(&x[t * cols..][..cols]);
    }
    let xt = b.upload(&xs);
    let yt = b.upload(&vec![7.5f32; 1 + n * (rows + 2)]);
    let xspan = Span::rows(&xt, cols + 3).at(2);
    b.matmul_id(w, &it, xspan, per, n, Span::rows(&yt, rows + 2).at(1))
        .unwrap();
    let all = b.read(&yt, 1 + n * (rows + 2)).unwrap();
    assert_eq!(all[0], 7.5, "nothing before the first row is written");
    (0..n)
        .flat_map(|i| {
            assert_eq!(&all[1 + i * (rows + 2) + rows..][..2], &[7.5, 7.5]);
            all[1 + i * (rows + 2)..][..rows].to_vec()
        })
        .collect()
}

fn check_matmul_id(g: &GpuBackend, ty: GgmlType, count: usize, ids: &[u32], per: usize) {
    let (rows, cols) = (37, cols_for(ty));
    let (bytes, deq) = matrix(ty, count * rows, cols, 5 + count as u64);
    let n = ids.len();
    let x = data(n.div_ceil(per) * cols, 40 + n as u64);
    let cpu = Cpu::new(KvDtype::F16);
    let wg = g.upload_stack(ty, count, rows, cols, &bytes).unwrap();
    let wc = cpu.upload_stack(ty, count, rows, cols, &bytes).unwrap();
    let got = run_matmul_id(g, &wg, ids, &x, (cols, rows), per);
    let want = run_matmul_id(&cpu, &wc, ids, &x, (cols, rows), per);
    let what = format!("{ty} {count} x {rows} x {cols}, {n} rows, per {per}");
    for (i, &id) in ids.iter().enumerate() {
        let xr = &x[(i / per) * cols..][..cols];
        for r in 0..rows {
            let wr = &deq[(id as usize * rows + r) * cols..][..cols];
            let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = wr
                .iter()
                .zip(xr)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let v = got[i * rows + r] as f64;
            assert!(
                (v - exact).abs() <= DOT_TOL * mag + 1e-30,
                "{what}: row {i} out {r} = {v}, f64 reference {exact}"
            );
        }
    }
    let e = nmse(&got, &want);
    assert!(
        e <= CPU_NMSE,
        "{what}: NMSE {e:.2e} against the CPU backend"
    );
    eprintln!("{what}: NMSE {e:.2e} against the CPU backend");
}

/// Experts' gate/up (`per = k`: each token's row feeds its k experts) and down (`per = 1`),
/// and per-head matrices: 1 token, a 13-token batch (ids repeating, some matrix unused), and
/// batches past the tiled kernel's threshold.
#[test]
fn matmul_id_every_listed_type() {
    let g = GpuBackend::new(dev().clone());
    for ty in TYPES {
        check_matmul_id(&g, ty, 5, &[3, 0, 4], 3);
        check_matmul_id(&g, ty, 5, &[2], 1);
        let batch: Vec<u32> = (0..13 * 3).map(|i| (i * 7 % 11 % 4) as u32).collect();
        check_matmul_id(&g, ty, 5, &batch, 3);
        check_matmul_id(&g, ty, 5, &batch, 1);
        // Past 64 rows: grouped by id on the device, then tiled (one group over 32 rows).
        let prefill: Vec<u32> = (0..70 * 3).map(|i| (i * 7 % 13 % 5) as u32).collect();
        check_matmul_id(&g, ty, 5, &prefill, 3);
        check_matmul_id(&g, ty, 5, &prefill[..67], 1);
    }
}

/// A stack split across bindings (whole matrices per binding) gives the bits of the unsplit
/// one; a stack is refused where one matrix is meant; bad ids and shapes are errors.
#[test]
fn matmul_id_split_stacks_and_errors() {
    let small = GpuDevice::open_with(
        gpu::BackendKind::Any,
        DeviceOptions {
            max_binding: Some(3 * 37 * 416 * 34 / 32),
            ..Default::default()
        },
    )
    .expect("a GPU adapter");
    let (whole, split) = (GpuBackend::new(dev().clone()), GpuBackend::new(small));
    let ty = GgmlType::Q8_0;
    let (rows, cols, count) = (37, 416, 7);
    let (bytes, _) = matrix(ty, count * rows, cols, 9);
    let ww = whole.upload_stack(ty, count, rows, cols, &bytes).unwrap();
    let ws = split.upload_stack(ty, count, rows, cols, &bytes).unwrap();
    assert_eq!(ww.bindings(), 1);
    assert!(ws.bindings() >= 3, "{} bindings", ws.bindings());
    for len in [20, 150] {
        let ids: Vec<u32> = (0..len).map(|i| (i * 5 % count) as u32).collect();
        let x = data(ids.len() * cols, 3);
        assert_eq!(
            run_matmul_id(&whole, &ww, &ids, &x, (cols, rows), 1),
            run_matmul_id(&split, &ws, &ids, &x, (cols, rows), 1)
        );
    }
    let (xt, yt) = (whole.tensor(cols), whole.tensor(rows));
    let e = whole
        .matmul(&ww, Span::rows(&xt, cols), 1, Span::rows(&yt, rows))
        .err()
        .unwrap();
    assert!(e.to_string().contains("stack of 7"), "{e}");
    let it = ids_tensor(&whole, &[0, 1]);
    let e = whole
        .matmul_id(&ww, &it, Span::rows(&xt, cols), 1, 2, Span::rows(&yt, rows))
        .err()
        .unwrap();
    assert!(e.to_string().contains("matmul_id input"), "{e}");
    let e = whole
        .upload_stack(ty, 3, rows, cols, &bytes[..100])
        .err()
        .unwrap();
    assert!(e.to_string().contains("bytes, expected"), "{e}");
    let cpu = Cpu::new(KvDtype::F16);
    let wc = cpu.upload_stack(ty, count, rows, cols, &bytes).unwrap();
    let (xc, yc, bad) = (cpu.tensor(cols), cpu.tensor(rows), ids_tensor(&cpu, &[7]));
    let e = cpu
        .matmul_id(
            &wc,
            &bad,
            Span::rows(&xc, cols),
            1,
            1,
            Span::rows(&yc, rows),
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("matrix id"), "{e}");
}

fn router(n_expert: usize, n_used: usize, gating: Gating) -> Router {
    Router {
        n_expert,
        n_used,
        gating,
        norm_weights: false,
        weights_scale: 0.0,
        n_group: 0,
        n_group_used: 0,
    }
}

fn run_route<B: Backend>(
    b: &B,
    r: &Router,
    logits: &[f32],
    bias: Option<&[f32]>,
    n: usize,
) -> (Vec<u32>, Vec<f32>) {
    let lt = b.upload(logits);
    let bt = bias.map(|v| b.upload(v));
    let (ids, w) = (b.tensor(n * r.n_used), b.tensor(n * r.n_used));
    b.route(r, &lt, bt.as_ref(), n, &ids, &w).unwrap();
    let ids = b.read(&ids, n * r.n_used).unwrap();
    (
        ids.iter().map(|v| v.to_bits()).collect(),
        b.read(&w, n * r.n_used).unwrap(),
    )
}

/// Every gating, with and without the selection bias, group-limited routing, normalised
/// and scaled weights, 1 row and 9: the same experts chosen (exactly) and their weights
/// within 1e-5 of the largest (the GPU's `exp` differs in the last bits).
#[test]
fn route_matches_cpu() {
    let g = GpuBackend::new(dev().clone());
    let cpu = Cpu::new(KvDtype::F16);
    let mut cases = Vec::new();
    for gating in [Gating::Softmax, Gating::Sigmoid, Gating::SoftmaxWeight] {
        cases.push(router(60, 4, gating));
        let mut r = router(64, 6, gating);
        r.norm_weights = true;
        r.weights_scale = 2.5;
        cases.push(r);
        let mut r = router(64, 8, gating);
        (r.n_group, r.n_group_used) = (8, 3);
        cases.push(r);
    }
    let mut r = router(256, 8, Gating::Sigmoid);
    (r.n_group, r.n_group_used, r.norm_weights, r.weights_scale) = (8, 4, true, 2.5);
    cases.push(r);
    let mut worst = 0f64;
    for (ci, r) in cases.iter().enumerate() {
        for n in [1, 9] {
            let logits: Vec<f32> = data(n * r.n_expert, 70 + ci as u64)
                .iter()
                .map(|v| v * 4.0)
                .collect();
            let bias: Vec<f32> = data(r.n_expert, 90).iter().map(|v| v * 0.5).collect();
            for b in [None, Some(&bias[..])] {
                let what = format!("{r:?} n={n} bias={}", b.is_some());
                let (gi, gw) = run_route(&g, r, &logits, b, n);
                let (ci_, cw) = run_route(&cpu, r, &logits, b, n);
                assert_eq!(gi, ci_, "{what}: chosen experts");
                assert_close(&what, &gw, &cw, 1e-5);
                worst = worst.max(max_rel(&gw, &cw));
            }
        }
    }
    eprintln!("router weights: worst {worst:.2e} of the largest");
    let mut bad = router(64, 9, Gating::Softmax);
    (bad.n_group, bad.n_group_used) = (8, 1);
    let t = g.tensor(64 * 8);
    let e = g.route(&bad, &t, None, 1, &t, &t).err().unwrap();
    assert!(e.to_string().contains("router"), "{e}");
}

/// The weighted sum of each token's rows (k of them, strided input and output) and, with
/// k = 1, a per-row scale (Qwen2-MoE's gated shared expert): within 1e-6.
#[test]
fn weighted_sum_sigmoid_and_copy_match_cpu() {
    let g = GpuBackend::new(dev().clone());
    let cpu = Cpu::new(KvDtype::F16);
    fn ws<B: Backend>(b: &B, x: &[f32], w: &[f32], k: usize, width: usize, n: usize) -> Vec<f32> {
        let (xt, wt) = (b.upload(x), b.upload(w));
        let yt = b.tensor(3 + n * (width + 1));
        let xs = Span::rows(&xt, width + 4).at(1);
        b.weighted_sum(xs, &wt, k, width, n, Span::rows(&yt, width + 1).at(3))
            .unwrap();
        b.sigmoid(&wt, n * k).unwrap();
        let mut out = b.read(&yt, 3 + n * (width + 1)).unwrap();
        out.extend(b.read(&wt, n * k).unwrap());
        let ct = b.tensor(n * 5);
        b.copy(Span::rows(&xt, width + 4).at(2), Span::rows(&ct, 5), 5, n)
            .unwrap();
        out.extend(b.read(&ct, n * 5).unwrap());
        out
    }
    for (k, width, n) in [(6, 333, 1), (6, 333, 7), (1, 64, 5), (8, 2048, 3)] {
        let x = data(1 + n * k * (width + 4), 11);
        let w = data(n * k, 12);
        let got = ws(&g, &x, &w, k, width, n);
        let want = ws(&cpu, &x, &w, k, width, n);
        assert_close(&format!("k={k} width={width} n={n}"), &got, &want, 1e-6);
        eprintln!("k={k} width={width} n={n}: {:.2e}", max_rel(&got, &want));
    }
}

/// A latent cache (one f16 row of `[latent | rope]` per position, the values its prefix)
/// with DeepSeek's 576/512 widths: a 9-token prompt, then 2 single steps, 16 query heads
/// sharing the row, against the CPU's latent cache. F16 keys on both sides; the GPU's f32
/// sums differ from the CPU's flash attention by 2e-3 of the largest output at most.
#[test]
fn latent_cache_attention_matches_cpu() {
    let g = GpuBackend::new(dev().clone());
    let cpu = Cpu::new(KvDtype::F16);
    let (dk, dv, nh) = (576, 512, 16);
    let p = AttnParams {
        n_head: nh,
        scale: 1.0 / (dk as f32).sqrt(),
        softcap: 0.0,
        window: 0,
    };
    fn attend<B: Backend>(b: &B, p: &AttnParams, dk: usize, dv: usize) -> Vec<f32> {
        let cache = b.latent_cache(16, dk, dv).unwrap();
        assert_eq!(b.cache_slots(&cache), 16);
        let mut out = Vec::new();
        for (p0, p1) in [(0, 9), (9, 10), (10, 11)] {
            let n = p1 - p0;
            let rows = b.upload(&data(n * dk, 30 + p0 as u64));
            let q = b.upload(&data(n * p.n_head * dk, 50 + p0 as u64));
            let o = b.tensor(n * p.n_head * dv);
            let k = Span::rows(&rows, dk);
            b.kv_store(&cache, k, k, n, p0).unwrap();
            let qs = Span::rows(&q, p.n_head * dk);
            b.attention(&cache, p, qs, n, p0, Span::rows(&o, p.n_head * dv))
                .unwrap();
            out.extend(b.read(&o, n * p.n_head * dv).unwrap());
        }
        out
    }
    let got = attend(&g, &p, dk, dv);
    let want = attend(&cpu, &p, dk, dv);
    assert_close("latent attention", &got, &want, 2e-3);
    eprintln!(
        "latent attention: {:.2e} of the largest",
        max_rel(&got, &want)
    );
    let e = g.latent_cache(16, 64, 128).err().unwrap();
    assert!(e.to_string().contains("latent values"), "{e}");
}
