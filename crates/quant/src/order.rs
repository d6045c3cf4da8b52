//! Which kernels a matmul uses so that its results equal llama.cpp's: the summation order
//! ggml's x86 CPU backend picks for a weight type, matrix shape and batch size (plain
//! `vec_dot`, its repacked 8-row layouts, the tiled K-quant matmul, llamafile's sgemm). On
//! aarch64 its ARM build's repacked orders come from `aarch64::llama_cpp_order`. This
//! is policy about llama.cpp; which kernels exist is [`crate::dispatch`]'s business, and
//! `compute::matmul` applies the plan.

#[cfg(target_arch = "x86_64")]
use crate::dispatch::TileFn;
use crate::dispatch::{
    active_level, detected_level, vec_dot_fn, vec_dot_x4_fn, SimdLevel, Tile, VecDotFn, VecDotX4Fn,
};
use crate::GgmlType;

/// The kernels for the tokens of a matmul that share one summation order: `one` for single
/// products, `tile` for blocks of `tile.rows` weight rows, `x4` for one weight row against
/// four tokens; all three give the same bits for the same pair.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub one: VecDotFn,
    pub tile: Option<Tile>,
    pub x4: Option<VecDotX4Fn>,
}

/// How a matmul of `n_tokens` activation rows reproduces llama.cpp: tokens `0..n_first` go
/// through `first`, the others through `rest` (the two differ only for ggml's repacked
/// K-quants, whose gemm and gemv sum differently).
#[derive(Clone, Copy, Debug)]
pub struct MatmulPlan {
    pub first: Kernels,
    pub rest: Kernels,
    pub n_first: usize,
}

/// The kernels for a `ty` weight matrix of `rows` rows times `n_tokens` activation rows at
/// the active level (see [`llama_cpp_order`]), or `None` for a type with no dot product.
pub fn matmul_plan(ty: GgmlType, rows: usize, n_tokens: usize) -> Option<MatmulPlan> {
    let same = |k: Kernels| MatmulPlan {
        first: k,
        rest: k,
        n_first: n_tokens,
    };
    Some(match llama_cpp_order(ty, rows, n_tokens) {
        LlamaCppOrder::Repacked(rp) => MatmulPlan {
            first: Kernels {
                one: rp.gemm,
                tile: None,
                x4: Some(rp.gemm_x4),
            },
            rest: Kernels {
                one: rp.gemv,
                tile: None,
                x4: None,
            },
            n_first: n_tokens - n_tokens % 4,
        },
        LlamaCppOrder::RepackedTile { one, tile } => same(Kernels {
            one,
            tile: Some(tile),
            x4: None,
        }),
        LlamaCppOrder::Tiled(t) => same(Kernels {
            one: t.one,
            tile: t.tile,
            x4: t.x4,
        }),
        LlamaCppOrder::VecDot => {
            // Fewer than 4 tokens leave a 4-token tile mostly idle; a one-token kernel over
            // more weight rows does better there.
            let tile = match crate::dispatch::vec_dot_gemv_tile(ty) {
                Some(g) if n_tokens < 4 => Some(g),
                _ => match lane_tile(ty) {
                    Some(l) if n_tokens >= LANE_TILE_MIN_TOKENS => Some(l),
                    _ => crate::dispatch::vec_dot_tile(ty),
                },
            };
            same(Kernels {
                one: vec_dot_fn(ty)?,
                tile,
                x4: vec_dot_x4_fn(ty),
            })
        }
    })
}

/// Smallest batch for [`lane_tile`]: its 16 token lanes cost the same however few are used,
/// and below about 10 tokens the pair tile (`vec_dot_tile`) is faster.
pub const LANE_TILE_MIN_TOKENS: usize = 10;

/// The `vec_dot`-order tile with 16 tokens in a register's lanes and the activations packed
/// once per matmul, where written (Q4_1 and Q8_0 on AVX-512 VNNI), at the active level only:
/// it must give the bits of that level's [`vec_dot_fn`].
pub fn lane_tile(ty: GgmlType) -> Option<Tile> {
    #[cfg(target_arch = "x86_64")]
    if active_level() >= SimdLevel::Avx512 {
        use crate::x86::{q4_1_lanes, q8_0_lanes};
        let (rows, toks, f, bytes, pack): (_, _, TileFn, fn(usize) -> usize, _) = match ty {
            GgmlType::Q4_1 => (
                q4_1_lanes::ROWS,
                q4_1_lanes::TOKS,
                q4_1_lanes::tile_avx512,
                q4_1_lanes::pack_bytes,
                q4_1_lanes::pack as fn(usize, &[&[u8]], &mut [u8]),
            ),
            GgmlType::Q8_0 => (
                q8_0_lanes::ROWS,
                q8_0_lanes::TOKS,
                q8_0_lanes::tile_avx512,
                q8_0_lanes::pack_bytes,
                q8_0_lanes::pack,
            ),
            _ => return None,
        };
        return Some(Tile {
            rows,
            toks,
            f,
            x_f32: false,
            pack: Some(crate::dispatch::TilePack { bytes, f: pack }),
            prefetches: false,
        });
    }
    let _ = ty;
    None
}

/// The tile kernel of llama.cpp's repacked Q4_0 order at `level` (8 weight rows, up to 4
/// tokens with AVX2 or 8 with AVX-512; see [`crate::q4_0::vec_dot_repacked`]), or `None` below AVX2, where ggml does not
/// repack Q4_0.
pub fn repacked_q4_0_tile(level: SimdLevel) -> Option<Tile> {
    if level > detected_level() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::repack_q4_0 as r;
        let (f, toks): (TileFn, usize) = match level {
            SimdLevel::Avx2 => (r::tile_avx2, r::TOKS_AVX2),
            SimdLevel::Avx512 => (r::tile_avx512, r::TOKS_AVX512),
            _ => return None,
        };
        Some(Tile {
            rows: r::ROWS,
            toks,
            f,
            x_f32: false,
            pack: None,
            prefetches: false,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The tile kernel of llama.cpp's repacked IQ4_NL order at `level` (8 weight rows; see
/// [`crate::iq4_nl::vec_dot_repacked`]), or `None` below AVX2, where ggml does not repack.
pub fn repacked_iq4_nl_tile(level: SimdLevel) -> Option<Tile> {
    if level > detected_level() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::repack_iq4_nl as r;
        let (f, toks): (TileFn, usize) = match level {
            SimdLevel::Avx2 => (r::tile_avx2, r::TOKS_AVX2),
            SimdLevel::Avx512 => (r::tile_avx512, r::TOKS_AVX512),
            _ => return None,
        };
        Some(Tile {
            rows: crate::x86::repack_q4_0::ROWS,
            toks,
            f,
            x_f32: false,
            pack: None,
            prefetches: false,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The two dot kernels that reproduce llama.cpp's matmul for a weight matrix its x86 build
/// repacks into 8-row interleaved blocks (`GGML_CPU_REPACK`, on by default). Such a matmul
/// does not use `vec_dot`: tokens `0..n - n % 4` go through `gemm` (use [`Self::gemm`] for
/// them) and the last `n % 4` tokens through `gemv` ([`Self::gemv`]); the two sum in different
/// orders, so the same token can get other last bits depending on its position in the batch.
#[derive(Clone, Copy, Debug)]
pub struct RepackedDot {
    pub gemm: VecDotFn,
    /// [`Self::gemm`] for the 4 tokens of one group at once, bit-identical per token.
    pub gemm_x4: VecDotX4Fn,
    pub gemv: VecDotFn,
}

/// The repacked-order kernels for a `ty` weight matrix of `rows` rows, or `None` where
/// llama.cpp at the active level would keep using `vec_dot` ([`vec_dot_fn`]). ggml repacks
/// Q4_K when AVX2 is present and Q2_K with AVX-512, if `rows % 8 == 0`; both are covered
/// (ggml also repacks Q4_0 and IQ4_NL with AVX2, see [`llama_cpp_order`], and MXFP4). The
/// activations are Q8_K as usual: ggml's 4-token quantizer gives the same bytes as
/// [`crate::activation::quantize_q8_k`] except when a block's largest magnitude occurs with both signs, where it
/// negates quants and scale together, which leaves every dot unchanged.
pub fn repacked_dot(ty: GgmlType, rows: usize) -> Option<RepackedDot> {
    #[cfg(target_arch = "x86_64")]
    if ty == GgmlType::Q4_K && rows.is_multiple_of(8) && active_level() >= SimdLevel::Avx2 {
        use crate::x86::q4_k;
        return Some(RepackedDot {
            gemm: q4_k::vec_dot_repack_gemm_avx2,
            gemm_x4: if active_level() >= SimdLevel::Avx512 {
                q4_k::vec_dot_repack_gemm_x4_avx512
            } else {
                q4_k::vec_dot_repack_gemm_x4_avx2
            },
            gemv: q4_k::vec_dot_repack_gemv_avx2,
        });
    }
    #[cfg(target_arch = "x86_64")]
    if ty == GgmlType::Q2_K && rows.is_multiple_of(8) && active_level() >= SimdLevel::Avx512 {
        use crate::x86::q2_k;
        return Some(RepackedDot {
            gemm: q2_k::vec_dot_repack_gemm_avx2,
            gemm_x4: q2_k::vec_dot_repack_gemm_x4,
            gemv: q2_k::vec_dot_repack_gemv_avx2,
        });
    }
    let _ = (ty, rows);
    None
}

/// The kernels reproducing llama.cpp's tiled K-quant matmul (`GGML_CPU_TILED_MM`, on by
/// default), which its x86 build uses instead of `vec_dot` when a matmul has 8 or more tokens
/// and the weights are not repacked (see [`repacked_dot`], which takes precedence). Each
/// output is its own chain (one term per super-block), so `x4` is just a faster way to get
/// four of them.
#[derive(Clone, Copy, Debug)]
pub struct TiledDot {
    pub one: VecDotFn,
    pub x4: Option<VecDotX4Fn>,
    /// Several weight rows by several tokens in the same chains, where written.
    pub tile: Option<Tile>,
}

/// Smallest batch (tokens) for which llama.cpp takes the tiled path.
pub const TILED_MIN_TOKENS: usize = 8;

/// The tiled-order kernels for `ty` at the active level, or `None` where they are not
/// written yet (Q2_K..Q6_K and the IQ types are).
pub fn tiled_dot(ty: GgmlType) -> Option<TiledDot> {
    #[cfg(target_arch = "x86_64")]
    {
        let level = active_level();
        if level >= SimdLevel::Avx2 {
            use crate::x86::{iq4_xs, q2_k, q3_k, q4_k, q5_k, q6_k};
            let avx512 = level >= SimdLevel::Avx512;
            fn lattice<L: crate::iq_grid::Lattice>() -> TiledDot {
                TiledDot {
                    one: crate::x86::iq_grid::vec_dot_tiled_avx2::<L>,
                    x4: None,
                    tile: None,
                }
            }
            return match ty {
                GgmlType::Q2_K => Some(TiledDot {
                    one: q2_k::vec_dot_tiled_avx2,
                    x4: None,
                    tile: None,
                }),
                GgmlType::Q3_K => Some(TiledDot {
                    one: q3_k::vec_dot_tiled_avx2,
                    x4: None,
                    tile: None,
                }),
                GgmlType::Q4_K => Some(TiledDot {
                    one: q4_k::vec_dot_tiled_avx2,
                    x4: None,
                    tile: None,
                }),
                GgmlType::Q5_K => Some(TiledDot {
                    one: q5_k::vec_dot_tiled_avx2,
                    x4: Some(q5_k::vec_dot_tiled_x4_avx2),
                    tile: None,
                }),
                GgmlType::Q6_K if avx512 => Some(TiledDot {
                    one: q6_k::vec_dot_tiled_avx512,
                    x4: Some(q6_k::vec_dot_tiled_x4_avx512),
                    tile: Some(Tile {
                        rows: crate::x86::q6_k_tile::ROWS,
                        toks: crate::x86::q6_k_tile::TOKS,
                        f: crate::x86::q6_k_tile::tile_avx512,
                        x_f32: false,
                        pack: Some(crate::dispatch::TilePack {
                            bytes: crate::x86::q6_k_tile::pack_bytes,
                            f: crate::x86::q6_k_tile::pack,
                        }),
                        prefetches: false,
                    }),
                }),
                GgmlType::Q6_K => Some(TiledDot {
                    one: q6_k::vec_dot_tiled_avx2,
                    x4: Some(q6_k::vec_dot_tiled_x4_avx2),
                    tile: None,
                }),
                GgmlType::IQ2_XXS => Some(lattice::<crate::iq2_xxs::Iq2Xxs>()),
                GgmlType::IQ2_XS => Some(lattice::<crate::iq2_xs::Iq2Xs>()),
                GgmlType::IQ2_S => Some(lattice::<crate::iq2_s::Iq2S>()),
                GgmlType::IQ3_XXS => Some(lattice::<crate::iq3_xxs::Iq3Xxs>()),
                GgmlType::IQ3_S => Some(lattice::<crate::iq3_s::Iq3S>()),
                GgmlType::IQ1_S => Some(TiledDot {
                    one: crate::iq1::vec_dot_tiled::<crate::iq1_s::Iq1S>,
                    x4: None,
                    tile: None,
                }),
                GgmlType::IQ1_M => Some(TiledDot {
                    one: crate::iq1::vec_dot_tiled::<crate::iq1_m::Iq1M>,
                    x4: None,
                    tile: None,
                }),
                GgmlType::IQ4_XS => Some(TiledDot {
                    one: iq4_xs::vec_dot_tiled_avx2,
                    x4: Some(iq4_xs::vec_dot_tiled_x4_avx2),
                    tile: None,
                }),
                _ => None,
            };
        }
    }
    let _ = ty;
    None
}

/// Which kernel family llama.cpp's x86 CPU build uses for a matmul of a `ty` weight matrix
/// with `rows` rows and `n_tokens` activation rows, as far as this crate reproduces it.
#[derive(Clone, Copy, Debug)]
pub enum LlamaCppOrder {
    /// Plain `vec_dot` ([`vec_dot_fn`], or the bit-identical `x4`/`w4` kernels).
    VecDot,
    /// Repacked weights: [`RepackedDot::gemm`] for tokens `0..n - n % 4`, `gemv` for the rest.
    Repacked(RepackedDot),
    /// One order for every token: the tiled K-quant matmul (or, for unrepacked IQ4_NL,
    /// llamafile's sgemm).
    Tiled(TiledDot),
    /// One order for every token with a tile kernel: repacked Q4_0 (gemm and gemv sum
    /// alike) and llamafile's F16 sgemm (2 or more tokens, rows % 4 == 0).
    RepackedTile { one: VecDotFn, tile: Tile },
}

/// ggml's choice for K-quant weights: repacking wins (when ggml repacks the type at this
/// level and `rows % 8 == 0`), else the tiled matmul for 8 or more tokens, else `vec_dot`.
/// Q4_0 and IQ4_NL with AVX2 and `rows % 8 == 0` are repacked
/// ([`LlamaCppOrder::RepackedTile`]). Other
/// types get [`LlamaCppOrder::VecDot`]: llamafile's sgemm, which ggml uses for Q5_0/Q8_0
/// (and unrepacked Q4_0) batches of 2 or more tokens, keeps `vec_dot`'s per-output order on
/// x86 (one 8-lane accumulator per output, the same fused multiply-adds and final sum); its
/// F16 path (2 or more tokens, rows % 4 == 0) is reproduced at avx512 (16-lane tinyBLAS) and
/// at avx2 (8-lane tinyBLAS, as a build without AVX-512 runs it).
pub fn llama_cpp_order(ty: GgmlType, rows: usize, n_tokens: usize) -> LlamaCppOrder {
    // llama.cpp's ARM build repacks other types, in other orders (see `aarch64::llama_cpp_order`).
    #[cfg(target_arch = "aarch64")]
    if let Some(order) = crate::aarch64::llama_cpp_order(ty, rows) {
        return order;
    }
    #[cfg(target_arch = "x86_64")]
    if ty == GgmlType::F16
        && n_tokens >= 2
        && rows.is_multiple_of(4)
        && active_level() >= SimdLevel::Avx512
    {
        use crate::x86::tinyblas_f16 as t;
        return LlamaCppOrder::RepackedTile {
            one: t::vec_dot_avx512,
            tile: Tile {
                rows: t::ROWS,
                toks: t::TOKS_WIDE,
                f: t::tile_wide_avx512,
                x_f32: true,
                pack: None,
                prefetches: false,
            },
        };
    }
    #[cfg(target_arch = "x86_64")]
    if ty == GgmlType::F16
        && n_tokens >= 2
        && rows.is_multiple_of(4)
        && active_level() == SimdLevel::Avx2
    {
        use crate::x86::tinyblas_f16_avx2 as t;
        return LlamaCppOrder::RepackedTile {
            one: t::vec_dot_avx2,
            tile: Tile {
                rows: t::ROWS,
                toks: t::TOKS,
                f: t::tile_wide_avx2,
                x_f32: true,
                pack: None,
                prefetches: false,
            },
        };
    }
    if ty == GgmlType::Q4_0 && rows.is_multiple_of(8) {
        if let Some(tile) = repacked_q4_0_tile(active_level()) {
            return LlamaCppOrder::RepackedTile {
                one: crate::q4_0::vec_dot_repacked,
                tile,
            };
        }
    }
    if ty == GgmlType::IQ4_NL && rows.is_multiple_of(8) {
        if let Some(tile) = repacked_iq4_nl_tile(active_level()) {
            return LlamaCppOrder::RepackedTile {
                one: crate::iq4_nl::vec_dot_repacked,
                tile,
            };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if ty == GgmlType::IQ4_NL && n_tokens >= 2 && active_level() >= SimdLevel::Avx2 {
        // Not repacked (rows % 8 != 0): llamafile's sgemm, one accumulator per output.
        return LlamaCppOrder::Tiled(TiledDot {
            one: crate::x86::iq4_nl::vec_dot_sgemm_avx2,
            x4: None,
            tile: None,
        });
    }
    if let Some(r) = repacked_dot(ty, rows) {
        return LlamaCppOrder::Repacked(r);
    }
    match tiled_dot(ty) {
        Some(t) if n_tokens >= TILED_MIN_TOKENS => LlamaCppOrder::Tiled(t),
        _ => LlamaCppOrder::VecDot,
    }
}

/// One interleaved Q4_0 group (or two, for `group16`) times 1..=`toks` Q8_0 rows; see
/// [`crate::q4_0x8`]. Results go to `out[t * rows + r]`.
pub type GroupFn = fn(n: usize, groups: &[u8], x: &[&[u8]], out: &mut [f32]);

/// The kernels for Q4_0 weights interleaved at load time.
#[derive(Clone, Copy, Debug)]
pub struct InterleavedQ4_0 {
    pub group8: GroupFn,
    /// Two consecutive groups (16 rows) at once, where the level has wide enough vectors.
    pub group16: Option<GroupFn>,
    /// Most activation rows per call.
    pub toks: usize,
}

/// Whether Q4_0 matrices of `rows` rows should be interleaved at load time: where llama.cpp
/// repacks them (x86 with AVX2, rows a multiple of 8), so the summation order stays its own.
pub fn interleaves_q4_0(rows: usize) -> bool {
    interleaved_q4_0().is_some() && rows.is_multiple_of(crate::q4_0x8::ROWS)
}

/// Interleaved Q4_0 kernels at the active level; `None` below AVX2 (where nothing is
/// interleaved).
pub fn interleaved_q4_0() -> Option<InterleavedQ4_0> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::q4_0x8 as k;
        match active_level() {
            SimdLevel::Avx2 => Some(InterleavedQ4_0 {
                group8: k::group8_avx2_entry,
                group16: None,
                toks: k::TOKS_AVX2,
            }),
            SimdLevel::Avx512 => Some(InterleavedQ4_0 {
                group8: k::group8_vnni_entry,
                group16: Some(k::group16_vnni_entry),
                toks: k::TOKS,
            }),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The kernels for Q4_K weights interleaved by 16 rows at load time ([`crate::q4_kx16`]):
/// one group times up to [`InterleavedQ4K::toks`] Q8_K rows, results `out[t * 16 + r]`, in
/// llama.cpp's repacked `gemm` order (tokens `0..n - n % 4` of a matmul) or `gemv` order
/// (the last `n % 4`), as [`repacked_dot`] for plain rows.
#[derive(Clone, Copy, Debug)]
pub struct InterleavedQ4K {
    pub gemm: GroupFn,
    pub gemv: GroupFn,
    pub toks: usize,
}

/// Whether Q4_K matrices of `rows` rows are interleaved at load time: where llama.cpp
/// repacks them (rows a multiple of 8, AVX2) and this CPU has the interleaved kernels
/// (AVX-512 VNNI, rows a multiple of 16). Other matrices keep their rows and the same order.
pub fn interleaves_q4_k(rows: usize) -> bool {
    interleaved_q4_k().is_some()
        && rows.is_multiple_of(crate::q4_kx16::ROWS)
        && repacked_dot(GgmlType::Q4_K, rows).is_some()
}

/// Interleaved Q4_K kernels at the active level; `None` below AVX-512.
pub fn interleaved_q4_k() -> Option<InterleavedQ4K> {
    #[cfg(target_arch = "x86_64")]
    if active_level() >= SimdLevel::Avx512 {
        use crate::x86::q4_kx16 as k;
        return Some(InterleavedQ4K {
            gemm: k::gemm_entry,
            gemv: k::gemv_entry,
            toks: k::TOKS,
        });
    }
    None
}
