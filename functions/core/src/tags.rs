//! Tag text as a matcher must read it. Tags are written by anyone with tagging rights, in any spelling and
//! sometimes with intent: ` PROD `, `ＰＲＯＤ` (full-width), `pr\u{200B}od` (a zero-width space inside). Every
//! comparison the policy makes goes through [`normalise`], so all of those read as `prod`.
//!
//! The same character set is what the CDK app's IAM guard lists (`cdk/lib/production-guard.ts`); the table in
//! `cdk/test/fixtures/tag-spellings.json`, generated from this code, keeps the two in step.

use unicode_normalization::UnicodeNormalization;

/// Characters that render as nothing: Unicode's format characters (general category Cf) and its
/// Default_Ignorable_Code_Point set. Zero-width spaces and joiners, bidi controls, the byte-order mark, soft hyphen,
/// Hangul fillers, variation selectors, and the tag characters used to smuggle invisible text into prompts.
/// Inclusive ranges, Unicode 15.
pub const INVISIBLE_RANGES: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// Bidirectional controls: they reorder what a reader sees (`U+202E` makes `gnp.exe` read `exe.png`).
pub const BIDI_CONTROLS: &[(u32, u32)] = &[(0x061C, 0x061C), (0x200E, 0x200F), (0x202A, 0x202E), (0x2066, 0x2069)];

fn in_ranges(c: char, ranges: &[(u32, u32)]) -> bool {
    let c = c as u32;
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

pub fn is_invisible(c: char) -> bool {
    in_ranges(c, INVISIBLE_RANGES)
}

pub fn is_bidi_control(c: char) -> bool {
    in_ranges(c, BIDI_CONTROLS)
}

pub fn has_invisible(s: &str) -> bool {
    s.chars().any(is_invisible)
}

/// Quotes a person or a spreadsheet may wrap a value in.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '`' | '\u{2018}' | '\u{2019}' | '\u{201C}' | '\u{201D}' | '\u{00AB}' | '\u{00BB}')
}

/// How the policy compares tag keys and values: Unicode NFKC (full-width and styled letters become plain ones),
/// invisible characters removed, surrounding whitespace and quotes trimmed, lower case.
pub fn normalise(s: &str) -> String {
    // Invisible characters go before NFKC (one between a letter and its accent would block composition) and after
    // it (NFKC maps a few look-alikes onto them).
    let visible: String = s.chars().filter(|c| !is_invisible(*c)).nfkc().filter(|c| !is_invisible(*c)).collect();
    let folded: String = visible.to_lowercase().nfkc().collect();
    folded.trim_matches(|c: char| c.is_whitespace() || is_quote(c)).to_owned()
}

/// Whether two tag keys name the same tag for the policy.
pub fn same_key(a: &str, b: &str) -> bool {
    normalise(a) == normalise(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spellings_of_prod_read_as_prod() {
        for raw in [
            "prod",
            " PROD ",
            "\"Prod\"",
            "'prod'",
            "\u{201C}prod\u{201D}",
            "pr\u{200B}od",
            "\u{FEFF}prod",
            "p\u{00AD}rod",
            "\u{202E}prod",
            "ＰＲＯＤ",
            "𝐩𝐫𝐨𝐝",
            "ⓟⓡⓞⓓ",
            "\tprod\n",
            "pro\u{E0064}d",
        ] {
            assert_eq!(normalise(raw), "prod", "{raw:?}");
        }
        assert_eq!(normalise("Non-Prod"), "non-prod");
        assert!(same_key("Environment", " ENVIRONMENT"));
        assert!(same_key("Environ\u{200B}ment", "environment"));
        assert!(!same_key("Environments", "environment"));
    }

    #[test]
    fn ranges_are_sorted_and_disjoint() {
        for pair in INVISIBLE_RANGES.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
        for c in ['a', ' ', '-', 'é', '中', '\u{00A0}'] {
            assert!(!is_invisible(c), "{:04X}", c as u32);
        }
    }

    /// The code points of a Unicode property as regex-syntax's tables hold it (generated from the Unicode Character
    /// Database): the oracle for the set, from outside this crate.
    fn unicode_property(name: &str) -> Vec<(u32, u32)> {
        let hir = regex_syntax::Parser::new().parse(&format!("\\p{{{name}}}")).unwrap();
        match hir.kind() {
            regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(class)) => {
                class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
            }
            other => panic!("\\p{{{name}}} is not a class: {other:?}"),
        }
    }

    /// The set is exactly the format characters (Cf) and the Default_Ignorable_Code_Point property of the Unicode
    /// Character Database, code point by code point, both ways.
    #[test]
    fn the_invisible_set_is_unicodes_format_and_default_ignorable_characters() {
        let mut expected = std::collections::BTreeSet::new();
        for property in ["Cf", "Default_Ignorable_Code_Point"] {
            let ranges = unicode_property(property);
            assert!(ranges.len() > 10, "{property}: {ranges:?}");
            for (lo, hi) in ranges {
                expected.extend(lo..=hi);
            }
        }
        for c in ['\u{200C}', '\u{200D}', '\u{FE0F}', '\u{E0041}', '\u{E01EF}'] {
            assert!(expected.contains(&(c as u32)), "the oracle lacks {:04X}", c as u32);
        }
        let ours: std::collections::BTreeSet<u32> = INVISIBLE_RANGES.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
        let missing: Vec<String> = expected.difference(&ours).map(|c| format!("{c:04X}")).collect();
        let extra: Vec<String> = ours.difference(&expected).map(|c| format!("{c:04X}")).collect();
        assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not in Unicode's sets {extra:?}");
        for c in expected {
            assert!(char::from_u32(c).is_some_and(is_invisible), "{c:04X}");
        }
    }

    /// The bidirectional controls are exactly Unicode's Bidi_Control property (found by the mutation run: nothing
    /// here checked them).
    #[test]
    fn the_bidi_controls_are_unicodes() {
        let expected: Vec<u32> = unicode_property("Bidi_Control").into_iter().flat_map(|(lo, hi)| lo..=hi).collect();
        let ours: Vec<u32> = BIDI_CONTROLS.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
        assert_eq!(ours, expected);
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(is_bidi_control(c), expected.contains(&(c as u32)), "{:04X}", c as u32);
        }
    }

    /// Any character of the invisible set, from all of each range (not its first code point only).
    fn any_invisible() -> impl Strategy<Value = char> {
        (0..INVISIBLE_RANGES.len(), any::<u32>()).prop_map(|(r, offset)| {
            let (lo, hi) = INVISIBLE_RANGES[r];
            char::from_u32(lo + offset % (hi - lo + 1)).expect("the ranges hold no surrogate")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Normalising twice changes nothing, and what comes out has no invisible characters, no surrounding
        /// whitespace or quotes, and no upper case.
        #[test]
        fn normalise_is_idempotent_and_clean(s in "\\PC{0,24}", invisible in prop::collection::vec(any_invisible(), 0..4)) {
            let mut raw = s.clone();
            for (i, &c) in invisible.iter().enumerate() {
                let at = raw.char_indices().nth(i).map_or(raw.len(), |(p, _)| p);
                raw.insert(at, c);
            }
            let once = normalise(&raw);
            prop_assert_eq!(normalise(&once), once.clone());
            prop_assert!(!has_invisible(&once));
            prop_assert_eq!(once.trim(), once.as_str());
            prop_assert_eq!(once.to_lowercase(), once.clone());
            // Invisible characters never change what a value reads as.
            prop_assert_eq!(normalise(&raw), normalise(&s));
        }
    }
}
