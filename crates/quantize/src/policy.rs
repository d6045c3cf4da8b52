//! Which type each tensor gets: llama-quantize's rules (llama.cpp b11434, `llama-quant.cpp`),
//! restated. A file is byte-identical to llama-quantize's only if every choice here is the
//! same, so the rules keep their quirks: counters that advance in tensor order, layer
//! positions taken from the counters unless the model has experts, and a few
//! architecture-specific cases (Falcon, 70B models).

use quant::GgmlType::{self, *};

use crate::mix::{ftype as ft, Mix};

/// The role of a tensor, from its name (llama.cpp's `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

impl Category {
    pub fn of(name: &str) -> Category {
        use Category::*;
        if name == "output.weight" {
            return Output;
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return TokenEmbd;
        }
        // First match wins, in this order (a name can contain several).
        const BY_PART: [(&str, Category); 9] = [
            ("attn_qkv.weight", AttnQkv),
            ("attn_kv_b.weight", AttnKvB),
            ("attn_v.weight", AttnV),
            ("attn_k.weight", AttnK),
            ("attn_q.weight", AttnQ),
            ("attn_output.weight", AttnOutput),
            ("ffn_up", FfnUp),
            ("ffn_gate", FfnGate),
            ("ffn_down", FfnDown),
        ];
        BY_PART
            .iter()
            .find(|(part, _)| name.contains(part))
            .map_or(Other, |&(_, c)| c)
    }

    /// Attention-V-like tensors, which the mixes give more bits.
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

/// Whether llama-quantize quantizes a tensor at all (else it is copied): 2D and 3D weights,
/// except norms, routers, position and token-type embeddings and a list of small or
/// sensitive tensors of particular architectures.
pub fn allows_quantization(name: &str, n_dims: usize, arch: &str, keep_output: bool) -> bool {
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    if keep_output && name == "output.weight" {
        return false;
    }
    const NEVER: [&str; 35] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    if NEVER.iter().any(|p| name.contains(p)) {
        return false;
    }
    if name == "position_embd.weight" || name == "token_types.weight" {
        return false;
    }
    const GLM5_NEXT: [&str; 14] = [
        "hc_",
        "indexer.attn_q_b",
        "indexer.attn_k",
        "indexer.proj",
        "indexer_compressor_gate",
        "indexer_compressor_ape",
        "ssm_f_a.weight",
        "ssm_f_b.weight",
        "ssm_g_a.weight",
        "ssm_g_b.weight",
        "ssm_beta.weight",
        "attn_kv_a_mqa.weight",
        "attn_k_b.weight",
        "attn_v_b.weight",
    ];
    !(arch == "glm5-next" && GLM5_NEXT.iter().any(|p| name.contains(p)))
}

/// What the rules need to know about the model.
#[derive(Clone, Debug, Default)]
pub struct ModelFacts {
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// Query heads per KV head (layer 0).
    pub n_gqa: u32,
    pub n_expert: u32,
    /// llama.cpp's `LLM_TYPE_70B` (which gets attention V bumped).
    pub is_70b: bool,
    /// No `output.weight`: the embedding doubles as the output projection.
    pub tied_embeddings: bool,
    /// Number of attention-V-like tensors in the file.
    pub n_attn_v: u32,
}

/// The user's choices that change the rules.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub output_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// `--tensor-type PATTERN=TYPE`: the first pattern (a regular expression searched in the
    /// name, as llama-quantize does) that matches sets the type.
    pub tensor_types: Vec<(regex::Regex, GgmlType)>,
    pub pure: bool,
    pub has_imatrix: bool,
}

/// Counters that advance as tensors are visited in file order.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    i_attn_v: u32,
    i_ffn_down: u32,
    i_ffn_gate: u32,
    i_ffn_up: u32,
    pub n_fallback: u32,
}

/// Where a fallback type was needed: the tensor's rows do not fit the chosen type's blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub wanted: GgmlType,
    pub got: GgmlType,
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer of `name` (`blk.N.`), for models with experts where the counters are not the
/// layer index.
fn layer_of(name: &str) -> Option<i64> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type of one tensor that [`allows_quantization`] lets through, and the fallback taken
/// if any. `cols` is the row length (ggml `ne[0]`), `experts` its `ne[2]`.
pub fn choose(
    mix: &Mix,
    name: &str,
    (cols, experts): (u64, u64),
    facts: &ModelFacts,
    ov: &Overrides,
    counters: &mut Counters,
) -> Result<(GgmlType, Option<Fallback>), String> {
    let cat = Category::of(name);
    if let (Some(t), Category::TokenEmbd) = (ov.token_embedding_type, cat) {
        let named = name == "per_layer_token_embd.weight"
            && ov.tensor_types.iter().any(|(p, _)| p.is_match(name));
        if !named {
            return Ok((t, None));
        }
    }
    if let (Some(t), Category::Output) = (ov.output_type, cat) {
        return Ok((t, None));
    }
    let mut ty = mix.default;
    if ty.block_size() == 1 {
        // F32 / F16 / BF16 targets: no per-tensor rules.
        return Ok((ty, None));
    }
    let manual = ov
        .tensor_types
        .iter()
        .find(|(p, _)| p.is_match(name))
        .map(|&(_, t)| t);
    if let Some(t) = manual {
        ty = t;
    } else if !ov.pure {
        ty = by_mix(
            mix.ftype,
            ty,
            name,
            cat,
            (cols, experts),
            facts,
            ov,
            counters,
        )?;
    }
    Ok(fallback(ty, cols, counters))
}

/// llama.cpp's `tensor_type_fallback`: a smaller-block type when the rows do not divide.
fn fallback(ty: GgmlType, cols: u64, counters: &mut Counters) -> (GgmlType, Option<Fallback>) {
    let bs = ty.block_size() as u64;
    if cols.is_multiple_of(bs) {
        return (ty, None);
    }
    counters.n_fallback += 1;
    let mut got = match ty {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_K | Q3_K | TQ1_0 | TQ2_0 => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        other => other,
    };
    if !cols.is_multiple_of(got.block_size() as u64) {
        got = F16;
    }
    (got, Some(Fallback { wanted: ty, got }))
}

/// llama.cpp's `llama_tensor_get_type_impl`: the mix's per-role adjustments.
#[allow(clippy::too_many_arguments)]
fn by_mix(
    ftype: u32,
    mut ty: GgmlType,
    name: &str,
    cat: Category,
    (cols, experts): (u64, u64),
    m: &ModelFacts,
    ov: &Overrides,
    c: &mut Counters,
) -> Result<GgmlType, String> {
    use Category::*;
    let falcon = m.arch == "falcon";
    let low_iq = [
        ft::IQ2_XXS,
        ft::IQ2_XS,
        ft::IQ1_S,
        ft::IQ2_S,
        ft::IQ2_M,
        ft::IQ1_M,
    ]
    .contains(&ftype);
    // With experts the counters run over every expert tensor, so the layer comes from the
    // name instead.
    let layer = |i: u32| -> Result<(i64, i64), String> {
        let n = m.n_layer as i64;
        if m.n_expert.max(1) > 1 {
            let l =
                layer_of(name).ok_or_else(|| format!("cannot tell the layer of tensor {name}"))?;
            if l < 0 || l >= n {
                return Err(format!("tensor {name} is in layer {l}, outside 0..{n}"));
            }
            return Ok((l, n));
        }
        Ok((i as i64, n))
    };
    let n8 = m.n_expert == 8;
    if m.arch == "glm5-next"
        && ["attn_q_a", "attn_q_b", "nextn.eh_proj"]
            .iter()
            .any(|p| name.contains(p))
        && !matches!(ty, F32 | BF16 | F16)
    {
        return Ok(Q8_0);
    }
    if cat == Output || (m.tied_embeddings && cat == TokenEmbd) {
        if let Some(t) = ov.output_type {
            return Ok(t);
        }
        if falcon || !cols.is_multiple_of(ty.block_size() as u64) {
            ty = Q8_0;
        } else if [
            ft::IQ2_XXS,
            ft::IQ2_XS,
            ft::IQ3_XXS,
            ft::IQ1_S,
            ft::IQ2_S,
            ft::IQ2_M,
            ft::IQ1_M,
        ]
        .contains(&ftype)
        {
            ty = Q5_K;
        } else if ty != Q8_0 {
            ty = Q6_K;
        }
        return Ok(ty);
    }
    if cat == TokenEmbd {
        if let Some(t) = ov.token_embedding_type {
            return Ok(t);
        }
        if [ft::IQ2_XXS, ft::IQ2_XS, ft::IQ1_S, ft::IQ1_M].contains(&ftype) {
            ty = Q2_K;
        } else if [ft::IQ2_S, ft::IQ2_M, ft::IQ3_XXS].contains(&ftype) {
            ty = IQ3_S;
        } else if [ft::TQ1_0, ft::TQ2_0].contains(&ftype) {
            ty = Q4_K;
        }
        return Ok(ty);
    }
    let _ = experts;
    if low_iq {
        let s_or_m = ftype == ft::IQ2_S || ftype == ft::IQ2_M;
        if cat.is_attn_v() {
            ty = if m.n_gqa >= 4 || m.n_expert >= 4 {
                Q4_K
            } else if s_or_m {
                IQ3_S
            } else {
                Q2_K
            };
            c.i_attn_v += 1;
        } else if n8 && cat == AttnK {
            ty = Q4_K;
        } else if cat == FfnDown {
            if c.i_ffn_down < m.n_layer / 8 {
                ty = if s_or_m { IQ3_S } else { Q2_K };
            }
            c.i_ffn_down += 1;
        } else if cat == AttnOutput {
            if n8 {
                ty = Q5_K;
            } else if ftype == ft::IQ1_S || ftype == ft::IQ1_M {
                ty = IQ2_XXS;
            } else if s_or_m {
                ty = IQ3_S;
            }
        }
        return Ok(ty);
    }
    let gqa4 = m.n_gqa >= 4;
    match cat {
        _ if cat.is_attn_v() => {
            let i = c.i_attn_v as i64;
            match ftype {
                ft::Q2_K => ty = if gqa4 { Q4_K } else { Q3_K },
                ft::Q2_K_S if gqa4 => ty = Q4_K,
                ft::IQ3_XXS => {
                    ty = if gqa4 {
                        Q4_K
                    } else if !ov.has_imatrix {
                        IQ3_S
                    } else {
                        IQ3_XXS
                    }
                }
                ft::IQ3_XS | ft::IQ3_S if gqa4 => ty = Q4_K,
                ft::IQ3_M => ty = Q4_K,
                ft::Q3_K_M => ty = if i < 2 { Q5_K } else { Q4_K },
                ft::Q3_K_L => ty = Q5_K,
                ft::IQ4_NL | ft::IQ4_XS if gqa4 => ty = Q5_K,
                ft::Q4_K_M | ft::Q5_K_M if use_more_bits(i, m.n_attn_v as i64) => ty = Q6_K,
                ft::Q4_K_S if i < 4 => ty = Q5_K,
                _ => {}
            }
            if m.is_70b && (ty == Q3_K || ty == Q4_K) {
                ty = Q5_K;
            }
            if n8 {
                ty = Q8_0;
            }
            c.i_attn_v += 1;
        }
        AttnK => {
            if n8 {
                ty = Q8_0;
            } else if ftype == ft::IQ3_XS {
                ty = IQ3_XXS;
            } else if ftype == ft::IQ3_XXS {
                ty = IQ2_S;
            }
        }
        AttnQ => {
            if ftype == ft::IQ3_XS {
                ty = IQ3_XXS;
            } else if ftype == ft::IQ3_XXS {
                ty = IQ2_S;
            }
        }
        FfnDown => {
            let (i, n) = layer(c.i_ffn_down)?;
            let more = use_more_bits(i, n);
            match ftype {
                ft::Q2_K => ty = Q3_K,
                ft::Q2_K_S if i < n / 8 => ty = Q4_K,
                ft::IQ3_XXS if !ov.has_imatrix => ty = if i < n / 8 { Q4_K } else { Q3_K },
                ft::Q3_K_M => {
                    ty = if i < n / 16 {
                        Q5_K
                    } else if !falcon || more {
                        Q4_K
                    } else {
                        Q3_K
                    }
                }
                ft::IQ3_M if i < n / 8 || (n8 && more) => ty = Q4_K,
                ft::Q3_K_L => ty = if falcon { Q4_K } else { Q5_K },
                ft::Q4_K_M => {
                    if falcon {
                        ty = if i < n / 16 {
                            Q6_K
                        } else if more {
                            Q5_K
                        } else {
                            Q4_K
                        };
                    } else if more {
                        ty = Q6_K;
                    }
                }
                ft::IQ4_NL | ft::IQ4_XS if i < n / 8 && !ov.has_imatrix => ty = Q5_K,
                ft::Q5_K_M if more => ty = Q6_K,
                ft::Q4_K_S if !falcon && i < n / 8 => ty = Q5_K,
                ft::Q4_0 | ft::Q5_0 if ov.has_imatrix && i < n / 8 => {
                    ty = if ftype == ft::Q4_0 { Q4_1 } else { Q5_1 };
                }
                _ => {}
            }
            c.i_ffn_down += 1;
        }
        AttnOutput => {
            if !falcon {
                if n8 {
                    if [
                        ft::Q2_K,
                        ft::IQ3_XS,
                        ft::IQ3_XXS,
                        ft::Q3_K_S,
                        ft::Q3_K_M,
                        ft::IQ4_NL,
                        ft::Q4_K_S,
                        ft::Q4_K_M,
                        ft::IQ3_S,
                        ft::IQ3_M,
                        ft::IQ4_XS,
                    ]
                    .contains(&ftype)
                    {
                        ty = Q5_K;
                    }
                } else {
                    match ftype {
                        ft::Q2_K => ty = Q3_K,
                        ft::IQ3_XXS => ty = IQ3_S,
                        ft::Q3_K_M | ft::IQ3_M => ty = Q4_K,
                        ft::Q3_K_L => ty = Q5_K,
                        _ => {}
                    }
                }
            } else if ftype == ft::Q3_K_L {
                ty = Q4_K;
            }
        }
        AttnQkv => match ftype {
            ft::Q3_K_M | ft::Q3_K_L | ft::IQ3_M => ty = Q4_K,
            ft::Q4_K_M => ty = Q5_K,
            ft::Q5_K_M => ty = Q6_K,
            _ => {}
        },
        FfnGate | FfnUp => {
            let counter = if cat == FfnGate {
                &mut c.i_ffn_gate
            } else {
                &mut c.i_ffn_up
            };
            let i = *counter;
            let (i, n) = layer(i)?;
            if ftype == ft::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
                ty = IQ3_XXS;
            }
            if cat == FfnGate {
                c.i_ffn_gate += 1;
            } else {
                c.i_ffn_up += 1;
            }
        }
        _ => {}
    }
    Ok(ty)
}

/// Whether a tensor of type `ty` in a file of `ftype` needs an importance matrix
/// (llama.cpp refuses to make it without one: the result would be garbage).
pub fn requires_imatrix(name: &str, ty: GgmlType, ftype: u32) -> bool {
    if matches!(Category::of(name), Category::TokenEmbd | Category::Output) {
        return false;
    }
    match ty {
        IQ3_XXS | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_M | IQ1_S => true,
        Q2_K => ftype == ft::Q2_K_S,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::find;

    fn facts(n_layer: u32, n_gqa: u32) -> ModelFacts {
        ModelFacts {
            arch: "llama".into(),
            n_layer,
            n_gqa,
            n_attn_v: n_layer,
            ..Default::default()
        }
    }

    #[test]
    fn categories_follow_the_first_matching_part() {
        assert_eq!(Category::of("blk.0.attn_v.weight"), Category::AttnV);
        assert_eq!(
            Category::of("blk.3.ffn_down_exps.weight"),
            Category::FfnDown
        );
        assert_eq!(Category::of("output.weight"), Category::Output);
        assert_eq!(Category::of("blk.0.attn_norm.weight"), Category::Other);
    }

    #[test]
    fn norms_routers_and_vectors_are_copied() {
        assert!(!allows_quantization(
            "blk.0.attn_norm.weight",
            1,
            "llama",
            false
        ));
        assert!(!allows_quantization(
            "blk.0.ffn_gate_inp.weight",
            2,
            "llama",
            false
        ));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2, "llama", false));
        assert!(!allows_quantization("output.weight", 2, "llama", true));
        assert!(allows_quantization("output.weight", 2, "llama", false));
        assert!(allows_quantization(
            "blk.0.ffn_down.weight",
            2,
            "llama",
            false
        ));
    }

    #[test]
    fn q4_k_m_bumps_v_and_down_in_the_use_more_bits_layers() {
        let mix = find("Q4_K_M").unwrap();
        let f = facts(16, 1);
        let ov = Overrides::default();
        let mut c = Counters::default();
        let v: Vec<GgmlType> = (0..16)
            .map(|l| {
                choose(
                    &mix,
                    &format!("blk.{l}.attn_v.weight"),
                    (4096, 1),
                    &f,
                    &ov,
                    &mut c,
                )
                .unwrap()
                .0
            })
            .collect();
        // use_more_bits(i, 16): i < 2, i >= 14, or (i - 2) % 3 == 2.
        let want: Vec<bool> = (0..16)
            .map(|i| !(2..14).contains(&i) || (i - 2) % 3 == 2)
            .collect();
        assert_eq!(v.iter().map(|&t| t == Q6_K).collect::<Vec<_>>(), want);
        assert!(v.iter().all(|&t| t == Q6_K || t == Q4_K));
    }

    #[test]
    fn rows_that_do_not_divide_fall_back_to_smaller_blocks() {
        let mix = find("IQ4_XS").unwrap();
        let ov = Overrides::default();
        let mut c = Counters::default();
        let f = facts(30, 3);
        let (t, fb) = choose(&mix, "blk.5.attn_q.weight", (576, 1), &f, &ov, &mut c).unwrap();
        assert_eq!((t, fb.map(|f| f.wanted)), (IQ4_NL, Some(IQ4_XS)));
        let (t, _) = choose(&mix, "blk.5.attn_q.weight", (48, 1), &f, &ov, &mut c).unwrap();
        assert_eq!(t, F16);
        assert_eq!(c.n_fallback, 2);
    }

    #[test]
    fn tied_embeddings_take_the_output_rule() {
        let mix = find("Q4_0").unwrap();
        let ov = Overrides::default();
        let mut c = Counters::default();
        let mut f = facts(30, 3);
        f.tied_embeddings = true;
        let got = choose(&mix, "token_embd.weight", (576, 1), &f, &ov, &mut c)
            .unwrap()
            .0;
        // The output rule says Q6_K; 576 is not a multiple of 256, so it falls back to Q8_0.
        assert_eq!(got, Q8_0);
        f.tied_embeddings = false;
        let got = choose(&mix, "token_embd.weight", (576, 1), &f, &ov, &mut c)
            .unwrap()
            .0;
        assert_eq!(got, Q4_0);
    }
}
