//! Untrusted text shown to a person: tag values and the model's justification on the approval page and in the
//! email. It is data, never markup or a link: control, invisible and bidirectional characters are removed (they hide
//! or reorder what a reader sees), and anything a mail client would turn into a link is defanged (`hxxps[:]//`,
//! `example[.]com`), so an attacker's tag cannot put a clickable "approve here" link in front of an approver.
//! Escaping for HTML is the page's job on top of this.

use crate::tags;

/// Top-level domains common enough in links that a bare `name.tld` in untrusted text is treated as one.
const LINKY_TLDS: &[&str] = &[
    "com",
    "net",
    "org",
    "io",
    "co",
    "info",
    "biz",
    "app",
    "dev",
    "ai",
    "xyz",
    "top",
    "site",
    "online",
    "link",
    "click",
    "me",
    "ly",
    "us",
    "uk",
    "eu",
    "de",
    "ru",
    "cn",
    "au",
    "ca",
    "in",
    "jp",
    "fr",
    "nl",
    "br",
    "tk",
    "gq",
    "ml",
    "cf",
    "ga",
    "zip",
    "mov",
    "aws",
    "amazonaws",
];

/// Schemes a mail client or browser would follow.
const SCHEMES: &[&str] = &["https", "http", "ftp", "file", "mailto", "javascript", "data", "vbscript", "ssh", "tel"];

/// Text safe to show as data: no control, invisible or bidi characters, links defanged, at most `max` characters.
pub fn display(text: &str, max: usize) -> String {
    let visible: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !tags::is_invisible(*c) && !tags::is_bidi_control(*c))
        .collect();
    defang(&visible).chars().take(max).collect()
}

/// Rewrites what looks like a link so that nothing auto-links it: schemes get `[:]` (and `http` becomes `hxxp`),
/// `www.` and the dots of host names get `[.]`. Email addresses (an owner tag, say) stay as they are: a mail client
/// makes them `mailto:` at most, which opens a draft and decides nothing.
pub fn defang(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&defang_word(word));
    }
    out
}

fn defang_word(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let mut w = word.to_owned();
    for scheme in SCHEMES {
        // `https:`, `javascript:`, anywhere in the word (`(see:https://...`).
        if let Some(at) = lower.find(&format!("{scheme}:")) {
            let end = at + scheme.len();
            let original = &word[at..end];
            let shown = if scheme.starts_with("http") {
                format!("{}xx{}", &original[..1], &original[3..])
            } else {
                original.to_owned()
            };
            w = format!("{}{}[:]{}", &word[..at], shown, &word[end + 1..]);
            break;
        }
    }
    let lower = w.to_ascii_lowercase();
    let linky = lower.contains("[:]") || lower.contains("www.") || looks_like_host(&lower);
    if linky {
        w = w.replace('.', "[.]");
    }
    w
}

/// `name.tld` or `a.b.tld/path`: dot-separated labels ending in a common top-level domain.
fn looks_like_host(word: &str) -> bool {
    let host = word.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.trim_matches(|c: char| !c.is_alphanumeric());
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|tld| LINKY_TLDS.contains(tld))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_untrusted_text_are_defanged() {
        let s = display("Approve now at https://evil.example.com/approve?x=1 or www.evil.io, or evil.com", 500);
        for link in ["https://", "evil.example.com", "www.evil", " evil.com"] {
            assert!(!s.contains(link), "{link} survived in {s}");
        }
        assert!(s.contains("hxxps[:]//evil[.]example[.]com/approve?x=1"), "{s}");
        assert!(s.contains("evil[.]com"), "{s}");
        assert_eq!(display("JAVASCRIPT:alert(1)", 100), "JAVASCRIPT[:]alert(1)");
    }

    #[test]
    fn ordinary_text_stays_readable() {
        for plain in
            ["idle for 14 days: peak CPU 2.5% on m5.large", "t3.large in ap-southeast-2", "owner ana@example.com"]
        {
            assert_eq!(display(plain, 500), plain);
        }
    }

    #[test]
    fn invisible_and_bidi_characters_are_removed() {
        // U+202E would show "gpj.exe" as "exe.jpg"; U+200B hides inside a word.
        assert_eq!(display("report\u{202E}gpj.exe", 100), "reportgpj.exe");
        assert_eq!(display("ap\u{200B}prove\u{2066}d\u{2069}", 100), "approved");
        assert_eq!(display("a\r\nSubject: b", 100), "a  Subject: b");
        assert_eq!(display(&"x".repeat(300), 5), "xxxxx");
    }
}
