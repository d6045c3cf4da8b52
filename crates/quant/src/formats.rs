//! Every tensor format the crate computes with, in one table. Adding a format: its file
//! (with `FORMAT`), its SIMD kernel set in `x86/` if any, and one line here and one in
//! `x86/mod.rs`'s table.

use crate::format::Format;
use crate::GgmlType;

pub static FORMATS: &[&Format] = &[
    &crate::f32::FORMAT,
    &crate::f16::FORMAT,
    &crate::bf16::FORMAT,
    &crate::q4_0::FORMAT,
    &crate::q4_1::FORMAT,
    &crate::q5_0::FORMAT,
    &crate::q5_1::FORMAT,
    &crate::q8_0::FORMAT,
    &crate::q8_1::FORMAT,
    &crate::q2_k::FORMAT,
    &crate::q3_k::FORMAT,
    &crate::q4_k::FORMAT,
    &crate::q5_k::FORMAT,
    &crate::q6_k::FORMAT,
    &crate::q8_k::FORMAT,
    &crate::iq1_s::FORMAT,
    &crate::iq1_m::FORMAT,
    &crate::iq2_xxs::FORMAT,
    &crate::iq2_xs::FORMAT,
    &crate::iq2_s::FORMAT,
    &crate::iq3_xxs::FORMAT,
    &crate::iq3_s::FORMAT,
    &crate::iq4_nl::FORMAT,
    &crate::iq4_xs::FORMAT,
    &crate::tq1_0::FORMAT,
    &crate::tq2_0::FORMAT,
];

/// The descriptor of `ty`, or `None` for a type the crate cannot compute with.
pub fn format(ty: GgmlType) -> Option<&'static Format> {
    FORMATS.iter().copied().find(|f| f.ty == ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_once_and_partners_are_formats_too() {
        for (i, f) in FORMATS.iter().enumerate() {
            assert!(FORMATS[..i].iter().all(|g| g.ty != f.ty), "{} twice", f.ty);
            let partner = format(f.vec_dot_type).expect("partner type is a format");
            assert_eq!(partner.vec_dot_type, partner.ty, "{}", f.ty);
        }
    }
}
