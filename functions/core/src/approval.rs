//! Signed approval links. An email carries `<base>/approvals/<id>?action=<a>&to=<recipient>&exp=<unix>&sig=<hex>`:
//! an unguessable 128-bit id ([`approval_id_for`]; never the Step Functions task token), the one decision the link
//! records, the person it was sent to, an expiry, and an HMAC-SHA256 over all four with a key the deployment keeps in
//! Secrets Manager. The callback verifies in constant time before it looks anything up.
//!
//! The recipient is what makes a decision someone's: every person in a proposal's audience gets their own links, so
//! the page records the link's recipient as the approver, never a name typed on it. A forwarded email still decides
//! as its recipient. A Slack button's link is signed for [`SLACK_RECIPIENT`]: it decides only through a Slack click
//! by an allowed user, never on a page.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApprovalAction {
    #[serde(rename = "approve")]
    Approve,
    #[serde(rename = "deny")]
    Deny,
    #[serde(rename = "snooze")]
    Snooze,
    /// The resource owner's one power: keep their resource for a while. A link of its own kind, sent only to the
    /// address the owner tag names (in the deployment's owner domains); no page or step turns it into anything else.
    #[serde(rename = "owner-snooze")]
    OwnerSnooze,
    /// Undo what an approved action did (start the instance again, recreate the volume): the one decision of an undo
    /// record, never of a proposal's approval.
    #[serde(rename = "undo")]
    Undo,
}

impl ApprovalAction {
    /// The decisions an approver gets a link for (the email's links, the Slack message's buttons).
    pub const APPROVER_DECISIONS: [ApprovalAction; 3] = [Self::Approve, Self::Deny, Self::Snooze];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Snooze => "snooze",
            Self::OwnerSnooze => "owner-snooze",
            Self::Undo => "undo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Approve, Self::Deny, Self::Snooze, Self::OwnerSnooze, Self::Undo].into_iter().find(|a| a.as_str() == s)
    }

    /// Whether this decision keeps the resource for the snooze period (an approver's snooze or its owner's).
    pub fn is_snooze(&self) -> bool {
        matches!(self, Self::Snooze | Self::OwnerSnooze)
    }
}

impl fmt::Display for ApprovalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recipient of a Slack button's link: such a link decides only through a signed click by an allowed Slack user
/// on the approval's own message, never on a page.
pub const SLACK_RECIPIENT: &str = "slack";

/// Whether `s` is an address a link may be sent to: one `@`, a dotted domain, printable ASCII without spaces,
/// quotes, brackets or separators, at most 254 characters. Anything else (a team name in a tag, "SYSTEM: approve
/// all") is refused.
pub fn is_email_address(s: &str) -> bool {
    let s = s.trim();
    let Some((local, domain)) = s.split_once('@') else { return false };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.chars().all(|c| c.is_ascii_graphic() && !"<>()[],;:\"\\".contains(c))
}

/// An address as links and records carry it: trimmed and lower case (mail addresses compare without case here).
pub fn normalized_address(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Whether `s` may be a link's recipient: a normalized email address, or [`SLACK_RECIPIENT`].
pub fn is_recipient(s: &str) -> bool {
    s == SLACK_RECIPIENT || (is_email_address(s) && normalized_address(s) == s)
}

/// The id is 16 bytes as 32 lowercase hex characters.
pub fn approval_id(bytes: [u8; 16]) -> String {
    hex::encode(bytes)
}

/// The first 16 bytes of an HMAC-SHA256 with the signing key over length-prefixed fields, as hex: unguessable
/// without the key, and the same for the same fields.
fn derived_id(key: &[u8], fields: &[&str]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    // Length-prefixed fields: no two field lists share an input.
    for field in fields {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    approval_id(bytes)
}

/// The approval id of one proposal of one run: derived with the signing key from the run id and the resource id.
/// Unguessable without the key, as a random id is, and the same for every delivery of the same request, so a retried
/// or redelivered request finds the record of the first.
pub fn approval_id_for(key: &[u8], run_id: &str, instance_id: &str) -> String {
    derived_id(key, &["finops-approval-id/v1", run_id, instance_id])
}

/// The id of the undo offered for what one run did to one resource: derived as [`approval_id_for`] is, from a
/// field no resource id has (`undo:` prefix), so it never equals the approval id of a proposal.
pub fn undo_id_for(key: &[u8], run_id: &str, resource_id: &str) -> String {
    approval_id_for(key, run_id, &format!("undo:{resource_id}"))
}

/// The key of the one message a run sends one recipient (`kind`: the approvals digest, the undo offer, an owner's
/// notice): what keeps a retried step from mailing anyone twice. Not an approval id: no link ever carries it.
pub fn message_id_for(key: &[u8], run_id: &str, kind: &str, recipient: &str) -> String {
    format!("message-{}", derived_id(key, &["finops-message-id/v1", run_id, kind, recipient]))
}

/// 32 lowercase hex characters: the only shape an approval id has (links, records and the actions step check it).
pub fn is_approval_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalLink {
    pub id: String,
    pub action: ApprovalAction,
    pub expires: i64,
    /// Who the link was sent to (a normalized address, or [`SLACK_RECIPIENT`]): the decider of record.
    pub recipient: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not a finops approval link ({0})")]
    Malformed(&'static str),
    #[error("this link's signature does not match: it was altered or not issued by finops")]
    BadSignature,
    #[error("this link expired at {0} (unix time)")]
    Expired(i64),
}

fn mac(key: &[u8], id: &str, action: ApprovalAction, expires: i64, recipient: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    // Versioned and newline-separated (no field holds a newline): no field can be shifted into another.
    mac.update(format!("finops-approval-v2\n{id}\n{}\n{expires}\n{recipient}", action.as_str()).as_bytes());
    mac
}

/// `to=` as a URL carries it: every byte but letters, digits and `-._` percent-encoded (`@` as `%40`, `+` as `%2B`).
fn encode_recipient(recipient: &str) -> String {
    recipient
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The inverse of [`encode_recipient`], strictly: `%XX` escapes and plain ASCII only (a `+` is not a space here).
fn decode_recipient(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_graphic() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

impl ApprovalLink {
    /// The link of `action` on approval `id` for `recipient` (an address, normalized here, or [`SLACK_RECIPIENT`]).
    pub fn sign(key: &[u8], id: &str, action: ApprovalAction, expires: i64, recipient: &str) -> Self {
        let recipient = if recipient == SLACK_RECIPIENT { recipient.to_owned() } else { normalized_address(recipient) };
        let sig = hex::encode(mac(key, id, action, expires, &recipient).finalize().into_bytes());
        Self { id: id.to_owned(), action, expires, recipient, sig }
    }

    pub fn url(&self, base_url: &str) -> String {
        format!(
            "{}/approvals/{}?action={}&to={}&exp={}&sig={}",
            base_url.trim_end_matches('/'),
            self.id,
            self.action.as_str(),
            encode_recipient(&self.recipient),
            self.expires,
            self.sig
        )
    }

    /// Whether the link was sent to a person's mailbox (its page may record its decision), rather than put on a
    /// Slack button.
    pub fn is_for_a_mailbox(&self) -> bool {
        self.recipient != SLACK_RECIPIENT
    }

    /// Parses the path (`/approvals/<id>`) and query string of a request. Anything unexpected is refused: unknown
    /// or repeated parameters, a wrong id shape, a recipient that is not a normalized address (or `slack`), a
    /// non-numeric expiry.
    pub fn parse(path: &str, query: &str) -> Result<Self, LinkError> {
        let id = path.strip_prefix("/approvals/").ok_or(LinkError::Malformed("path"))?;
        if !is_approval_id(id) {
            return Err(LinkError::Malformed("id"));
        }
        let (mut action, mut to, mut exp, mut sig) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(LinkError::Malformed("query"))?;
            let slot = match k {
                "action" => &mut action,
                "to" => &mut to,
                "exp" => &mut exp,
                "sig" => &mut sig,
                _ => return Err(LinkError::Malformed("unknown parameter")),
            };
            if slot.replace(v).is_some() {
                return Err(LinkError::Malformed("repeated parameter"));
            }
        }
        let action = ApprovalAction::parse(action.ok_or(LinkError::Malformed("action"))?)
            .ok_or(LinkError::Malformed("action"))?;
        let to = to.ok_or(LinkError::Malformed("to"))?;
        let recipient = decode_recipient(to).filter(|r| is_recipient(r)).ok_or(LinkError::Malformed("to"))?;
        let exp = exp.ok_or(LinkError::Malformed("exp"))?;
        if exp.is_empty() || exp.len() > 12 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkError::Malformed("exp"));
        }
        let expires: i64 = exp.parse().map_err(|_| LinkError::Malformed("exp"))?;
        let sig = sig.ok_or(LinkError::Malformed("sig"))?;
        if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LinkError::Malformed("sig"));
        }
        Ok(Self { id: id.to_owned(), action, expires, recipient, sig: sig.to_ascii_lowercase() })
    }

    /// Checks the signature (constant time) and then the expiry.
    pub fn verify(&self, key: &[u8], now_unix: i64) -> Result<(), LinkError> {
        let given = hex::decode(&self.sig).map_err(|_| LinkError::Malformed("sig"))?;
        mac(key, &self.id, self.action, self.expires, &self.recipient)
            .verify_slice(&given)
            .map_err(|_| LinkError::BadSignature)?;
        if now_unix >= self.expires {
            return Err(LinkError::Expired(self.expires));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ID: &str = "00112233445566778899aabbccddeeff";
    const ANA: &str = "ana@example.com";

    fn split(url: &str) -> (String, String) {
        let path_and_query = url.strip_prefix("https://approve.example.com").unwrap();
        let (p, q) = path_and_query.split_once('?').unwrap();
        (p.to_owned(), q.to_owned())
    }

    #[test]
    fn round_trip_verifies_until_expiry_and_names_its_recipient() {
        let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Approve, 2_000, " Ana@Example.com");
        assert_eq!(link.recipient, ANA, "addresses are carried normalized");
        let url = link.url("https://approve.example.com/");
        assert_eq!(
            url,
            format!(
                "https://approve.example.com/approvals/{ID}?action=approve&to=ana%40example.com&exp=2000&sig={}",
                link.sig
            )
        );
        let (p, q) = split(&url);
        let parsed = ApprovalLink::parse(&p, &q).unwrap();
        assert_eq!(parsed, link);
        assert!(parsed.is_for_a_mailbox());
        assert_eq!(parsed.verify(KEY, 1_999), Ok(()));
        assert_eq!(parsed.verify(KEY, 2_000), Err(LinkError::Expired(2_000)));
    }

    #[test]
    fn plus_addresses_and_slack_buttons_survive_the_url() {
        let plus = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000, "ops+finops@example.co.uk");
        let (p, q) = split(&plus.url("https://approve.example.com"));
        assert!(q.contains("to=ops%2Bfinops%40example.co.uk"), "{q}");
        assert_eq!(ApprovalLink::parse(&p, &q).unwrap().recipient, "ops+finops@example.co.uk");
        let slack = ApprovalLink::sign(KEY, ID, ApprovalAction::Approve, 2_000, SLACK_RECIPIENT);
        let (p, q) = split(&slack.url("https://approve.example.com"));
        let parsed = ApprovalLink::parse(&p, &q).unwrap();
        assert_eq!((parsed.recipient.as_str(), parsed.is_for_a_mailbox()), ("slack", false));
        assert_eq!(parsed.verify(KEY, 1_000), Ok(()));
    }

    #[test]
    fn any_change_breaks_the_signature_the_recipient_included() {
        let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000, ANA);
        let mut other_action = link.clone();
        other_action.action = ApprovalAction::Approve;
        let mut later = link.clone();
        later.expires = 9_999;
        let mut other_id = link.clone();
        other_id.id = "ffffffffffffffffffffffffffffffff".into();
        let mut forwarded = link.clone();
        forwarded.recipient = "mallory@example.com".into();
        let mut to_slack = link.clone();
        to_slack.recipient = SLACK_RECIPIENT.into();
        for tampered in [other_action, later, other_id, forwarded, to_slack] {
            assert_eq!(tampered.verify(KEY, 1_000), Err(LinkError::BadSignature), "{tampered:?}");
        }
        assert_eq!(link.verify(b"another key", 1_000), Err(LinkError::BadSignature));
        // The same decision for another recipient is another signature.
        let bob = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000, "bob@example.com");
        assert_ne!(bob.sig, link.sig);
    }

    /// The words links and pages carry (the page's form posts `decision=<word>`; found by the mutation run: nothing
    /// in this crate read the Display).
    #[test]
    fn each_action_is_written_and_read_as_its_word() {
        for (action, word) in [
            (ApprovalAction::Approve, "approve"),
            (ApprovalAction::Deny, "deny"),
            (ApprovalAction::Snooze, "snooze"),
            (ApprovalAction::OwnerSnooze, "owner-snooze"),
            (ApprovalAction::Undo, "undo"),
        ] {
            assert_eq!((action.to_string().as_str(), action.as_str()), (word, word));
            assert_eq!(ApprovalAction::parse(word), Some(action));
        }
        assert_eq!(ApprovalAction::parse("Approve"), None, "exact words only");
    }

    #[test]
    fn an_owners_snooze_is_a_kind_of_its_own() {
        assert_eq!(ApprovalAction::parse("owner-snooze"), Some(ApprovalAction::OwnerSnooze));
        assert!(
            !ApprovalAction::APPROVER_DECISIONS.contains(&ApprovalAction::OwnerSnooze),
            "approvers get no owner link"
        );
        assert!(ApprovalAction::OwnerSnooze.is_snooze() && ApprovalAction::Snooze.is_snooze());
        assert!(!ApprovalAction::Approve.is_snooze());
        assert_eq!(serde_json::to_string(&ApprovalAction::OwnerSnooze).unwrap(), "\"owner-snooze\"");
        let owner = ApprovalLink::sign(KEY, ID, ApprovalAction::OwnerSnooze, 2_000, "raj@example.com");
        let mut approve = owner.clone();
        approve.action = ApprovalAction::Approve;
        assert_eq!(approve.verify(KEY, 1_000), Err(LinkError::BadSignature), "an owner's link never approves");
        let mut snooze = owner.clone();
        snooze.action = ApprovalAction::Snooze;
        assert_eq!(snooze.verify(KEY, 1_000), Err(LinkError::BadSignature), "nor becomes an approver's snooze");
    }

    #[test]
    fn a_proposals_approval_id_is_stable_per_run_and_instance_and_secret_without_the_key() {
        let id = approval_id_for(KEY, "run-1", "i-0abc");
        assert!(is_approval_id(&id), "{id}");
        assert_eq!(id, approval_id_for(KEY, "run-1", "i-0abc"), "every delivery of the request finds the same record");
        for other in [
            approval_id_for(KEY, "run-2", "i-0abc"),
            approval_id_for(KEY, "run-1", "i-0abd"),
            approval_id_for(b"another key", "run-1", "i-0abc"),
            // Field boundaries count: ("run-1i", "-0abc") is another proposal.
            approval_id_for(KEY, "run-1i", "-0abc"),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn a_message_key_is_per_run_kind_and_recipient_and_never_an_approval_id() {
        let digest = message_id_for(KEY, "run-1", "digest", ANA);
        assert!(!is_approval_id(&digest), "no link can name it");
        assert_eq!(digest, message_id_for(KEY, "run-1", "digest", ANA));
        for other in [
            message_id_for(KEY, "run-2", "digest", ANA),
            message_id_for(KEY, "run-1", "undo", ANA),
            message_id_for(KEY, "run-1", "digest", "bob@example.com"),
        ] {
            assert_ne!(digest, other);
        }
    }

    #[test]
    fn an_undo_is_its_own_decision_and_its_id_is_never_an_approvals() {
        assert_eq!(ApprovalAction::parse("undo"), Some(ApprovalAction::Undo));
        assert!(
            !ApprovalAction::APPROVER_DECISIONS.contains(&ApprovalAction::Undo),
            "a proposal's page never offers an undo"
        );
        let undo = undo_id_for(KEY, "run-1", "i-0abc");
        assert!(is_approval_id(&undo));
        assert_ne!(undo, approval_id_for(KEY, "run-1", "i-0abc"));
        assert_eq!(undo, undo_id_for(KEY, "run-1", "i-0abc"), "a retried offer finds the same record");
        let link = ApprovalLink::sign(KEY, &undo, ApprovalAction::Undo, 2_000, ANA);
        let (p, q) = split(&link.url("https://approve.example.com"));
        assert_eq!(ApprovalLink::parse(&p, &q).unwrap().action, ApprovalAction::Undo);
        // An undo link's signature does not make an approval of the same id.
        let mut approve = link.clone();
        approve.action = ApprovalAction::Approve;
        assert_eq!(approve.verify(KEY, 1_000), Err(LinkError::BadSignature));
    }

    #[test]
    fn addresses_are_checked_as_mail_needs_them() {
        for good in ["a@example.com", "ops+finops@example.co.uk", "x.y-z_1@sub.example.org"] {
            assert!(is_email_address(good), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "@example.com",
            "a@b",
            "a@.com",
            "a@com.",
            "a b@example.com",
            "a@b@c.com",
            "\"a\"@example.com",
            "SYSTEM: approve all",
            "<a@example.com>",
            "a,b@example.com",
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
        assert!(is_recipient("ana@example.com") && is_recipient(SLACK_RECIPIENT));
        assert!(!is_recipient("Ana@example.com"), "links carry normalized addresses only");
        assert!(!is_recipient("slack:U0ALICE") && !is_recipient("") && !is_recipient("ana@example.com\n"));
    }

    #[test]
    fn malformed_links_are_refused() {
        let sig = "a".repeat(64);
        let to = "to=ana%40example.com";
        for (p, q) in [
            ("/approvals/xyz", format!("action=approve&{to}&exp=1&sig={sig}")),
            (&*format!("/other/{ID}"), format!("action=approve&{to}&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=nuke&{to}&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=-1&sig={sig}")),
            // An expiry of more than 12 digits (past the year 33,000), or none.
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=1234567890123&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=1&sig={sig}&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=1&sig={sig}&token=x")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&exp=1&sig=zz")),
            (&*format!("/approvals/{}", ID.to_uppercase()), format!("action=approve&{to}&exp=1&sig={sig}")),
            // No recipient, two, one that is not an address, one not normalized, one broken in its escapes.
            (&*format!("/approvals/{ID}"), format!("action=approve&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&{to}&{to}&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&to=ana&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&to=Ana%40example.com&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&to=ana%4&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&to=ana%40example.com%0A&exp=1&sig={sig}")),
        ] {
            assert!(matches!(ApprovalLink::parse(p, &q), Err(LinkError::Malformed(_))), "{p}?{q}");
        }
        // Twelve digits is still an expiry.
        let far = ApprovalLink::sign(KEY, ID, ApprovalAction::Approve, 999_999_999_999, ANA);
        let (p, q) = split(&far.url("https://approve.example.com"));
        assert_eq!(ApprovalLink::parse(&p, &q), Ok(far));
    }

    /// A small deterministic generator for the link mutations below (the tests need no crate for it).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Links a finops email could carry: every action, mailbox and Slack recipients, several expiries.
    fn genuine_link(rng: &mut Rng) -> ApprovalLink {
        let ids = [ID, "ffeeddccbbaa99887766554433221100", "0123456789abcdef0123456789abcdef"];
        let recipients = [ANA, "bo+ops@example.org", "c.d_e-f%x@sub.example.co", SLACK_RECIPIENT];
        let actions = [
            ApprovalAction::Approve,
            ApprovalAction::Deny,
            ApprovalAction::Snooze,
            ApprovalAction::OwnerSnooze,
            ApprovalAction::Undo,
        ];
        let expiries = [1, 1_800_000_000, 1_800_000_001, 99_999_999_999];
        ApprovalLink::sign(
            KEY,
            ids[rng.below(ids.len())],
            actions[rng.below(actions.len())],
            expiries[rng.below(expiries.len())],
            recipients[rng.below(recipients.len())],
        )
    }

    /// One to three edits an attacker holding a real link could make: a character changed, dropped or added, two
    /// parameters swapped, one parameter's value taken from another real link, a parameter repeated.
    fn mutate(rng: &mut Rng, path: &mut String, query: &mut String, signed: &mut Vec<ApprovalLink>) {
        const CHARS: &[u8] = b"0123456789abcdefABCDEF%&=+-._@/?xyz";
        for _ in 0..1 + rng.below(3) {
            let target = if rng.below(4) == 0 { &mut *path } else { &mut *query };
            let mut bytes = target.clone().into_bytes();
            match rng.below(6) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] = CHARS[rng.below(CHARS.len())];
                }
                1 if !bytes.is_empty() => {
                    bytes.remove(rng.below(bytes.len()));
                }
                2 => bytes.insert(rng.below(bytes.len() + 1), CHARS[rng.below(CHARS.len())]),
                3 => {
                    let mut pairs: Vec<&str> = query.split('&').collect();
                    let (a, b) = (rng.below(pairs.len()), rng.below(pairs.len()));
                    pairs.swap(a, b);
                    *query = pairs.join("&");
                    continue;
                }
                4 => {
                    let other = genuine_link(rng);
                    signed.push(other.clone());
                    let other = other.url("https://approve.example.com");
                    let (_, other_query) = split(&other);
                    let name = ["action=", "to=", "exp=", "sig="][rng.below(4)];
                    let value = |q: &str| q.split('&').find(|p| p.starts_with(name)).map(str::to_owned);
                    if let (Some(mine), Some(theirs)) = (value(query), value(&other_query)) {
                        *query = query.replacen(&mine, &theirs, 1);
                    }
                    continue;
                }
                _ => {
                    let pairs: Vec<String> = query.split('&').map(str::to_owned).collect();
                    let repeated = pairs[rng.below(pairs.len())].clone();
                    query.push('&');
                    query.push_str(&repeated);
                    continue;
                }
            }
            *target = String::from_utf8_lossy(&bytes).into_owned();
        }
    }

    /// Real links, mutated: the oracle is not `sign` but the links that were signed. A mutated link verifies exactly
    /// when it says what one of them said (same id, action, expiry, recipient and signature, however it is spelt:
    /// pieces of two real links can make a third real one) and has not expired; everything else is refused. The
    /// counts show the verifier was reached, both ways.
    #[test]
    fn mutated_real_links_verify_only_when_they_still_say_what_was_signed() {
        let (mut refused_unparsed, mut refused_signature, mut accepted, mut expired) = (0, 0, 0, 0);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let link = genuine_link(&mut rng);
            let (mut path, mut query) = split(&link.url("https://approve.example.com"));
            let unchanged = case % 5 == 0;
            let mut signed = vec![link.clone()];
            if !unchanged {
                mutate(&mut rng, &mut path, &mut query, &mut signed);
            }
            let now = 1_800_000_000;
            match ApprovalLink::parse(&path, &query) {
                Err(LinkError::Malformed(why)) => {
                    assert!(!unchanged, "{path}?{query}: a link as signed refused ({why})");
                    refused_unparsed += 1;
                }
                Err(e) => panic!("parsing only says malformed, not {e:?}"),
                Ok(parsed) => {
                    let same = signed.contains(&parsed);
                    match parsed.verify(KEY, now) {
                        Ok(()) => {
                            assert!(
                                same && now < parsed.expires,
                                "{path}?{query} verified but says {parsed:?}, not {link:?}"
                            );
                            accepted += 1;
                        }
                        Err(LinkError::Expired(at)) => {
                            assert!(same && at == parsed.expires && now >= at, "{path}?{query}: expired but altered");
                            expired += 1;
                        }
                        Err(LinkError::BadSignature) => {
                            assert!(!same, "{path}?{query}: the signed link itself refused");
                            refused_signature += 1;
                        }
                        Err(e) => panic!("{path}?{query}: {e:?}"),
                    }
                }
            }
        }
        let counts = (refused_unparsed, refused_signature, accepted, expired);
        eprintln!("mutated links: (malformed, bad signature, accepted, expired) = {counts:?}");
        assert!(
            refused_unparsed > 0 && refused_signature > 0 && accepted > 0 && expired > 0,
            "every outcome reached: {counts:?}"
        );
        // The point of mutating real links: many mutants parse, so the signature check is what refuses them.
        assert!(refused_signature * 10 > refused_unparsed, "the verifier is rarely reached: {counts:?}");
    }

    proptest! {
        // Ten times the other fuzz tests' cases: parsing is fast and links are what an attacker can send.
        #![proptest_config(ProptestConfig { cases: 10 * crate::fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary paths and queries never panic, and nothing but a correctly signed link verifies.
        #[test]
        fn fuzz_parser_and_verifier_accept_only_signed_links(path in ".{0,80}", query in ".{0,200}", now in 0i64..4_000_000_000) {
            if let Ok(link) = ApprovalLink::parse(&path, &query) {
                let genuine = ApprovalLink::sign(KEY, &link.id, link.action, link.expires, &link.recipient);
                prop_assert_eq!(link.verify(KEY, now).is_ok(), genuine.sig == link.sig && now < link.expires);
            }
        }

        /// Any address a link may be sent to survives its URL exactly.
        #[test]
        fn fuzz_recipients_round_trip(local in "[a-z0-9.+_%-]{1,20}", domain in "[a-z0-9-]{1,12}\\.[a-z]{2,6}") {
            let address = format!("{local}@{domain}");
            prop_assume!(is_email_address(&address));
            let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Approve, 10, &address);
            let url = link.url("https://approve.example.com");
            let (p, q) = split(&url);
            prop_assert_eq!(ApprovalLink::parse(&p, &q).unwrap(), link);
        }

        #[test]
        fn fuzz_flipping_any_signature_character_fails(pos in 0usize..64, exp in 1i64..4_000_000_000, action in 0usize..3) {
            let link = ApprovalLink::sign(KEY, ID, ApprovalAction::APPROVER_DECISIONS[action], exp, ANA);
            let mut sig: Vec<u8> = link.sig.clone().into_bytes();
            sig[pos] = if sig[pos] == b'0' { b'1' } else { b'0' };
            let tampered = ApprovalLink { sig: String::from_utf8(sig).unwrap(), ..link };
            prop_assert_eq!(tampered.verify(KEY, 0), Err(LinkError::BadSignature));
        }
    }
}
