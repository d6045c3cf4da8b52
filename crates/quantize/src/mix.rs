//! The target types `llama-quantize` offers: a file type (`general.file_type`, llama.cpp's
//! `llama_ftype`) with the tensor type most weights get; the per-tensor rules in
//! [`crate::policy`] then give some tensors more or fewer bits.

use quant::GgmlType::{self, *};

/// One entry of the table: what the user types, the file type id written to the file, the
/// default tensor type, and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub name: &'static str,
    pub ftype: u32,
    pub default: GgmlType,
    pub about: &'static str,
}

const fn mix(name: &'static str, ftype: u32, default: GgmlType, about: &'static str) -> Mix {
    Mix {
        name,
        ftype,
        default,
        about,
    }
}

/// In llama-quantize's order. Aliases (`Q3_K`, `Q4_K`, `Q5_K`) map to the `_M` mixes.
pub const MIXES: &[Mix] = &[
    mix("Q4_0", 2, Q4_0, "4.5 bpw, 32-weight blocks"),
    mix("Q4_1", 3, Q4_1, "5.0 bpw, 32-weight blocks with offset"),
    mix("Q5_0", 8, Q5_0, "5.5 bpw, 32-weight blocks"),
    mix("Q5_1", 9, Q5_1, "6.0 bpw, 32-weight blocks with offset"),
    mix(
        "IQ2_XXS",
        19,
        IQ2_XXS,
        "2.06 bpw (needs an importance matrix)",
    ),
    mix(
        "IQ2_XS",
        20,
        IQ2_XS,
        "2.31 bpw (needs an importance matrix)",
    ),
    mix(
        "IQ2_S",
        28,
        IQ2_XS,
        "2.5 bpw mix (needs an importance matrix)",
    ),
    mix(
        "IQ2_M",
        29,
        IQ2_S,
        "2.7 bpw mix (needs an importance matrix)",
    ),
    mix("IQ1_S", 24, IQ1_S, "1.56 bpw (needs an importance matrix)"),
    mix("IQ1_M", 31, IQ1_M, "1.75 bpw (needs an importance matrix)"),
    mix("TQ1_0", 36, TQ1_0, "1.69 bpw ternary"),
    mix("TQ2_0", 37, TQ2_0, "2.06 bpw ternary"),
    mix("Q2_K", 10, Q2_K, "K-quant mix, ~2.6-3.4 bpw"),
    mix(
        "Q2_K_S",
        21,
        Q2_K,
        "smaller Q2_K mix (needs an importance matrix)",
    ),
    mix("IQ3_XXS", 23, IQ3_XXS, "3.06 bpw"),
    mix("IQ3_S", 26, IQ3_S, "3.44 bpw"),
    mix("IQ3_M", 27, IQ3_S, "3.66 bpw mix"),
    mix("Q3_K", 12, Q3_K, "alias for Q3_K_M"),
    mix("IQ3_XS", 22, IQ3_S, "3.3 bpw mix"),
    mix("Q3_K_S", 11, Q3_K, "K-quant mix, ~3.5 bpw"),
    mix("Q3_K_M", 12, Q3_K, "K-quant mix, ~3.9 bpw"),
    mix("Q3_K_L", 13, Q3_K, "K-quant mix, ~4.3 bpw"),
    mix("IQ4_NL", 25, IQ4_NL, "4.5 bpw non-linear"),
    mix("IQ4_XS", 30, IQ4_XS, "4.25 bpw non-linear"),
    mix("Q4_K", 15, Q4_K, "alias for Q4_K_M"),
    mix("Q4_K_S", 14, Q4_K, "K-quant mix, ~4.6 bpw"),
    mix(
        "Q4_K_M",
        15,
        Q4_K,
        "K-quant mix, ~4.9 bpw (the usual choice)",
    ),
    mix("Q5_K", 17, Q5_K, "alias for Q5_K_M"),
    mix("Q5_K_S", 16, Q5_K, "K-quant mix, ~5.5 bpw"),
    mix("Q5_K_M", 17, Q5_K, "K-quant mix, ~5.7 bpw"),
    mix("Q6_K", 18, Q6_K, "6.56 bpw"),
    mix("Q8_0", 7, Q8_0, "8.5 bpw, nearly lossless"),
    mix("F16", 1, F16, "16-bit float"),
    mix("BF16", 32, BF16, "16-bit brain float"),
    mix("F32", 0, F32, "32-bit float"),
];

/// The mix named `name` (case-insensitive).
pub fn find(name: &str) -> Option<Mix> {
    MIXES
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .copied()
}

/// llama.cpp's `LLAMA_FTYPE_*` ids the rules test for.
pub mod ftype {
    pub const Q4_0: u32 = 2;
    pub const Q5_0: u32 = 8;
    pub const Q2_K: u32 = 10;
    pub const Q3_K_M: u32 = 12;
    pub const Q3_K_S: u32 = 11;
    pub const Q3_K_L: u32 = 13;
    pub const Q4_K_S: u32 = 14;
    pub const Q4_K_M: u32 = 15;
    pub const Q5_K_M: u32 = 17;
    pub const IQ2_XXS: u32 = 19;
    pub const IQ2_XS: u32 = 20;
    pub const Q2_K_S: u32 = 21;
    pub const IQ3_XS: u32 = 22;
    pub const IQ3_XXS: u32 = 23;
    pub const IQ1_S: u32 = 24;
    pub const IQ4_NL: u32 = 25;
    pub const IQ3_S: u32 = 26;
    pub const IQ3_M: u32 = 27;
    pub const IQ2_S: u32 = 28;
    pub const IQ2_M: u32 = 29;
    pub const IQ4_XS: u32 = 30;
    pub const IQ1_M: u32 = 31;
    pub const TQ1_0: u32 = 36;
    pub const TQ2_0: u32 = 37;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_ftypes_have_their_names() {
        assert_eq!(find("q4_k_m").unwrap().ftype, 15);
        let (alias, full) = (find("Q4_K").unwrap(), find("Q4_K_M").unwrap());
        assert_eq!((alias.ftype, alias.default), (full.ftype, full.default));
        assert!(find("Q4_K_X").is_none());
        for m in MIXES {
            let name = gguf::file_type_name(m.ftype).unwrap();
            assert!(
                name.ends_with(m.name) || m.about.starts_with("alias"),
                "{name} vs {}",
                m.name
            );
        }
    }
}
