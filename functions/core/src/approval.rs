//! Signed approval links. An email carries `<base>/approvals/<id>?action=<a>&exp=<unix>&sig=<hex>`: an unguessable
//! 128-bit id ([`approval_id_for`]; never the Step Functions task token), the action, an expiry, and an HMAC-SHA256 over all three with a
//! key the deployment keeps in Secrets Manager. The callback verifies in constant time before it looks anything up.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalAction {
    Approve,
    Deny,
    Snooze,
    /// Undo what an approved action did (start the instance again, recreate the volume): the one decision of an undo
    /// record, never of a proposal's approval.
    Undo,
}

impl ApprovalAction {
    /// The decisions on a proposal (the email's links, the page's other decisions).
    pub const ALL: [ApprovalAction; 3] = [Self::Approve, Self::Deny, Self::Snooze];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Snooze => "snooze",
            Self::Undo => "undo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().chain([Self::Undo]).find(|a| a.as_str() == s)
    }
}

impl fmt::Display for ApprovalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id is 16 bytes as 32 lowercase hex characters.
pub fn approval_id(bytes: [u8; 16]) -> String {
    hex::encode(bytes)
}

/// The approval id of one proposal of one run: the first 16 bytes of an HMAC-SHA256 with the signing key over the
/// run id and the instance id. Unguessable without the key, as a random id is, and the same for every delivery of
/// the same request, so a retried or redelivered approval request finds the record (and the email) of the first.
pub fn approval_id_for(key: &[u8], run_id: &str, instance_id: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    // Length-prefixed fields: no two (run, instance) pairs share an input.
    for field in ["finops-approval-id/v1", run_id, instance_id] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    approval_id(bytes)
}

/// The id of the undo offered for what one run did to one resource: derived as [`approval_id_for`] is, from a
/// field no resource id has (`undo:` prefix), so it never equals the approval id of a proposal.
pub fn undo_id_for(key: &[u8], run_id: &str, resource_id: &str) -> String {
    approval_id_for(key, run_id, &format!("undo:{resource_id}"))
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

fn mac(key: &[u8], id: &str, action: ApprovalAction, expires: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    // Versioned and newline-separated: no field can be shifted into another.
    mac.update(format!("finops-approval-v1\n{id}\n{}\n{expires}", action.as_str()).as_bytes());
    mac
}

impl ApprovalLink {
    pub fn sign(key: &[u8], id: &str, action: ApprovalAction, expires: i64) -> Self {
        let sig = hex::encode(mac(key, id, action, expires).finalize().into_bytes());
        Self { id: id.to_owned(), action, expires, sig }
    }

    pub fn url(&self, base_url: &str) -> String {
        format!(
            "{}/approvals/{}?action={}&exp={}&sig={}",
            base_url.trim_end_matches('/'),
            self.id,
            self.action.as_str(),
            self.expires,
            self.sig
        )
    }

    /// Parses the path (`/approvals/<id>`) and query string of a request. Anything unexpected is refused: unknown
    /// or repeated parameters, a wrong id shape, a non-numeric expiry.
    pub fn parse(path: &str, query: &str) -> Result<Self, LinkError> {
        let id = path.strip_prefix("/approvals/").ok_or(LinkError::Malformed("path"))?;
        if !is_approval_id(id) {
            return Err(LinkError::Malformed("id"));
        }
        let (mut action, mut exp, mut sig) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(LinkError::Malformed("query"))?;
            let slot = match k {
                "action" => &mut action,
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
        let exp = exp.ok_or(LinkError::Malformed("exp"))?;
        if exp.is_empty() || exp.len() > 12 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkError::Malformed("exp"));
        }
        let expires: i64 = exp.parse().map_err(|_| LinkError::Malformed("exp"))?;
        let sig = sig.ok_or(LinkError::Malformed("sig"))?;
        if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LinkError::Malformed("sig"));
        }
        Ok(Self { id: id.to_owned(), action, expires, sig: sig.to_ascii_lowercase() })
    }

    /// Checks the signature (constant time) and then the expiry.
    pub fn verify(&self, key: &[u8], now_unix: i64) -> Result<(), LinkError> {
        let given = hex::decode(&self.sig).map_err(|_| LinkError::Malformed("sig"))?;
        mac(key, &self.id, self.action, self.expires).verify_slice(&given).map_err(|_| LinkError::BadSignature)?;
        if now_unix >= self.expires {
            return Err(LinkError::Expired(self.expires));
        }
        Ok(())
    }

    /// The same link for another action: the confirmation page's buttons post these.
    pub fn for_action(&self, key: &[u8], action: ApprovalAction) -> Self {
        Self::sign(key, &self.id, action, self.expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ID: &str = "00112233445566778899aabbccddeeff";

    fn split(url: &str) -> (String, String) {
        let path_and_query = url.strip_prefix("https://approve.example.com").unwrap();
        let (p, q) = path_and_query.split_once('?').unwrap();
        (p.to_owned(), q.to_owned())
    }

    #[test]
    fn round_trip_verifies_until_expiry() {
        let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Approve, 2_000);
        let url = link.url("https://approve.example.com/");
        assert_eq!(url, format!("https://approve.example.com/approvals/{ID}?action=approve&exp=2000&sig={}", link.sig));
        let (p, q) = split(&url);
        let parsed = ApprovalLink::parse(&p, &q).unwrap();
        assert_eq!(parsed, link);
        assert_eq!(parsed.verify(KEY, 1_999), Ok(()));
        assert_eq!(parsed.verify(KEY, 2_000), Err(LinkError::Expired(2_000)));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000);
        let mut other_action = link.clone();
        other_action.action = ApprovalAction::Approve;
        let mut later = link.clone();
        later.expires = 9_999;
        let mut other_id = link.clone();
        other_id.id = "ffffffffffffffffffffffffffffffff".into();
        for tampered in [other_action, later, other_id] {
            assert_eq!(tampered.verify(KEY, 1_000), Err(LinkError::BadSignature));
        }
        assert_eq!(link.verify(b"another key", 1_000), Err(LinkError::BadSignature));
        // A signature for another action of the same approval does not transfer.
        let approve = link.for_action(KEY, ApprovalAction::Approve);
        assert_ne!(approve.sig, link.sig);
        assert_eq!(approve.verify(KEY, 1_000), Ok(()));
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
    fn an_undo_is_its_own_decision_and_its_id_is_never_an_approvals() {
        assert_eq!(ApprovalAction::parse("undo"), Some(ApprovalAction::Undo));
        assert!(!ApprovalAction::ALL.contains(&ApprovalAction::Undo), "a proposal's page never offers an undo");
        let undo = undo_id_for(KEY, "run-1", "i-0abc");
        assert!(is_approval_id(&undo));
        assert_ne!(undo, approval_id_for(KEY, "run-1", "i-0abc"));
        assert_eq!(undo, undo_id_for(KEY, "run-1", "i-0abc"), "a retried offer finds the same record");
        let link = ApprovalLink::sign(KEY, &undo, ApprovalAction::Undo, 2_000);
        let (p, q) = split(&link.url("https://approve.example.com"));
        assert_eq!(ApprovalLink::parse(&p, &q).unwrap().action, ApprovalAction::Undo);
        // An undo link's signature does not make an approval of the same id.
        let mut approve = link.clone();
        approve.action = ApprovalAction::Approve;
        assert_eq!(approve.verify(KEY, 1_000), Err(LinkError::BadSignature));
    }

    #[test]
    fn malformed_links_are_refused() {
        let sig = "a".repeat(64);
        for (p, q) in [
            ("/approvals/xyz", format!("action=approve&exp=1&sig={sig}")),
            (&*format!("/other/{ID}"), format!("action=approve&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=nuke&exp=1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&exp=-1&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&exp=1&sig={sig}&sig={sig}")),
            (&*format!("/approvals/{ID}"), format!("action=approve&exp=1&sig={sig}&token=x")),
            (&*format!("/approvals/{ID}"), "action=approve&exp=1&sig=zz".to_string()),
            (&*format!("/approvals/{}", ID.to_uppercase()), format!("action=approve&exp=1&sig={sig}")),
        ] {
            assert!(matches!(ApprovalLink::parse(p, &q), Err(LinkError::Malformed(_))), "{p}?{q}");
        }
    }

    proptest! {
        // Ten times the other fuzz tests' cases: parsing is fast and links are what an attacker can send.
        #![proptest_config(ProptestConfig { cases: 10 * crate::fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary paths and queries never panic, and nothing but a correctly signed link verifies.
        #[test]
        fn fuzz_parser_and_verifier_accept_only_signed_links(path in ".{0,80}", query in ".{0,200}", now in 0i64..4_000_000_000) {
            if let Ok(link) = ApprovalLink::parse(&path, &query) {
                let genuine = ApprovalLink::sign(KEY, &link.id, link.action, link.expires);
                prop_assert_eq!(link.verify(KEY, now).is_ok(), genuine.sig == link.sig && now < link.expires);
            }
        }

        #[test]
        fn fuzz_flipping_any_signature_character_fails(pos in 0usize..64, exp in 1i64..4_000_000_000, action in 0usize..3) {
            let link = ApprovalLink::sign(KEY, ID, ApprovalAction::ALL[action], exp);
            let mut sig: Vec<u8> = link.sig.clone().into_bytes();
            sig[pos] = if sig[pos] == b'0' { b'1' } else { b'0' };
            let tampered = ApprovalLink { sig: String::from_utf8(sig).unwrap(), ..link };
            prop_assert_eq!(tampered.verify(KEY, 0), Err(LinkError::BadSignature));
        }
    }
}
