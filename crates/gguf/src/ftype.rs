//! Names of `general.file_type` values (llama.cpp's `enum llama_ftype`).

const NAMES: &[(u32, &str)] = &[
    (0, "ALL_F32"),
    (1, "MOSTLY_F16"),
    (2, "MOSTLY_Q4_0"),
    (3, "MOSTLY_Q4_1"),
    (4, "MOSTLY_Q4_1_SOME_F16"),
    (7, "MOSTLY_Q8_0"),
    (8, "MOSTLY_Q5_0"),
    (9, "MOSTLY_Q5_1"),
    (10, "MOSTLY_Q2_K"),
    (11, "MOSTLY_Q3_K_S"),
    (12, "MOSTLY_Q3_K_M"),
    (13, "MOSTLY_Q3_K_L"),
    (14, "MOSTLY_Q4_K_S"),
    (15, "MOSTLY_Q4_K_M"),
    (16, "MOSTLY_Q5_K_S"),
    (17, "MOSTLY_Q5_K_M"),
    (18, "MOSTLY_Q6_K"),
    (19, "MOSTLY_IQ2_XXS"),
    (20, "MOSTLY_IQ2_XS"),
    (21, "MOSTLY_Q2_K_S"),
    (22, "MOSTLY_IQ3_XS"),
    (23, "MOSTLY_IQ3_XXS"),
    (24, "MOSTLY_IQ1_S"),
    (25, "MOSTLY_IQ4_NL"),
    (26, "MOSTLY_IQ3_S"),
    (27, "MOSTLY_IQ3_M"),
    (28, "MOSTLY_IQ2_S"),
    (29, "MOSTLY_IQ2_M"),
    (30, "MOSTLY_IQ4_XS"),
    (31, "MOSTLY_IQ1_M"),
    (32, "MOSTLY_BF16"),
    (36, "MOSTLY_TQ1_0"),
    (37, "MOSTLY_TQ2_0"),
    (38, "MOSTLY_MXFP4_MOE"),
    (1024, "GUESSED"),
];

/// The name of a `general.file_type` value, e.g. 15 → `MOSTLY_Q4_K_M`; `None` for ids llama.cpp
/// never assigned or has retired.
pub fn file_type_name(id: u32) -> Option<&'static str> {
    NAMES.iter().find(|e| e.0 == id).map(|e| e.1)
}

/// The `general.file_type` id of a name as [`file_type_name`] spells it (case-insensitive).
pub fn file_type_from_name(name: &str) -> Option<u32> {
    NAMES
        .iter()
        .find(|e| e.1.eq_ignore_ascii_case(name))
        .map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_retired_ids() {
        assert_eq!(file_type_name(15), Some("MOSTLY_Q4_K_M"));
        assert_eq!(file_type_name(3), Some("MOSTLY_Q4_1"));
        assert_eq!(file_type_name(32), Some("MOSTLY_BF16"));
        assert_eq!(file_type_name(5), None);
        assert_eq!(file_type_name(33), None);
        assert_eq!(file_type_from_name("mostly_q8_0"), Some(7));
    }
}
