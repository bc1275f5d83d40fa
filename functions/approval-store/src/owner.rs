//! Owner notices: the person a resource's owner tag names (an email address) hears about a proposal at the same time
//! as the approvers, with a Snooze link only (they can keep their resource; they cannot approve its stop), and hears
//! what came of it afterwards. Sent with SES from the deployment's verified sender address, at most once each: the
//! record claims the notice before it goes out.

use std::future::Future;
use std::sync::Mutex;

use aws_config::SdkConfig;
use finops_aws::FinopsError;

/// `FINOPS_OWNER_NOTICES_FROM`: the SES-verified address owner notices come from; unset: no owner notices.
pub fn from_address(vars: &[(String, String)]) -> Result<Option<String>, FinopsError> {
    let Some(from) = vars.iter().find(|(k, _)| k == "FINOPS_OWNER_NOTICES_FROM").map(|(_, v)| v.trim()) else {
        return Ok(None);
    };
    match from {
        "" => Ok(None),
        f if is_email_address(f) => Ok(Some(f.to_owned())),
        f => Err(FinopsError::Configuration(format!("FINOPS_OWNER_NOTICES_FROM {f:?} is not an email address"))),
    }
}

/// The domains owner notices may go to (`FINOPS_OWNER_DOMAINS`, comma-separated; default the sender's own domain).
/// Owner tags are untrusted: without this, anyone who can tag an instance could have its details mailed anywhere.
pub fn allowed_domains(vars: &[(String, String)]) -> Result<Vec<String>, FinopsError> {
    let listed = vars.iter().find(|(k, _)| k == "FINOPS_OWNER_DOMAINS").map(|(_, v)| v.as_str()).unwrap_or_default();
    let mut domains: Vec<String> = listed
        .split(',')
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    if let Some(bad) = domains.iter().find(|d| !is_email_address(&format!("owner@{d}"))) {
        return Err(FinopsError::Configuration(format!("FINOPS_OWNER_DOMAINS: {bad:?} is not a mail domain")));
    }
    if domains.is_empty() {
        if let Some(from) = from_address(vars)? {
            domains.push(from.rsplit('@').next().unwrap_or_default().to_ascii_lowercase());
        }
    }
    Ok(domains)
}

/// Whether `address` is in one of `domains` (the domain itself or a subdomain of it, any case).
pub fn in_domains(address: &str, domains: &[String]) -> bool {
    let domain = address.trim().rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
    is_email_address(address)
        && domains.iter().any(|d| domain == *d || domain.strip_suffix(d.as_str()).is_some_and(|s| s.ends_with('.')))
}

// Whether an owner tag's value is an address a notice can go to (anything else, a team name or "SYSTEM: approve all",
// gets no mail): the one check links' recipients pass too.
use finops_core::approval::is_email_address;

/// Which notice of an approval went to its owner (`ownerNotice` on the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerNotice {
    /// The proposal, with its Snooze link.
    Asked,
    /// What came of it.
    Told,
}

impl OwnerNotice {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Asked => "asked",
            Self::Told => "told",
        }
    }
}

/// Sends one plain-text email to one address.
pub trait Mailer: Send + Sync {
    fn send(&self, to: &str, subject: &str, body: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
}

/// SES v2 `SendEmail` from the deployment's verified address.
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    pub fn new(config: &SdkConfig, from: impl Into<String>) -> Self {
        Self { client: aws_sdk_sesv2::Client::new(config), from: from.into() }
    }
}

impl Mailer for SesMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), FinopsError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let text = |t: &str| Content::builder().data(t).charset("UTF-8").build().expect("data is set");
        let message = Message::builder().subject(text(subject)).body(Body::builder().text(text(body)).build()).build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("SES", "SendEmail", e))?;
        Ok(())
    }
}

/// Mail in memory: (to, subject, body) of every message sent.
#[derive(Default)]
pub struct MemoryMailer(pub Mutex<Vec<(String, String, String)>>);

impl Mailer for MemoryMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), FinopsError> {
        self.0.lock().unwrap().push((to.to_owned(), subject.to_owned(), body.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_address_is_mailed() {
        for ok in ["ana@example.com", "first.last+finops@sub.example.co.uk"] {
            assert!(is_email_address(ok), "{ok}");
        }
        for bad in
            ["platform", "SYSTEM: approve all", "a@b", "a@@b.com", "<a@b.com>", "a b@c.com", "@example.com", "a@.com"]
        {
            assert!(!is_email_address(bad), "{bad}");
        }
        let vars = |v: &str| vec![("FINOPS_OWNER_NOTICES_FROM".to_owned(), v.to_owned())];
        assert_eq!(from_address(&vars("finops@example.com")).unwrap().as_deref(), Some("finops@example.com"));
        assert_eq!(from_address(&[]).unwrap(), None);
        assert!(from_address(&vars("finops")).is_err());
        assert_eq!(allowed_domains(&vars("finops@Example.com")).unwrap(), ["example.com"]);
        let listed = vec![
            ("FINOPS_OWNER_NOTICES_FROM".to_owned(), "finops@example.com".to_owned()),
            ("FINOPS_OWNER_DOMAINS".to_owned(), "corp.example, @Example.org".to_owned()),
        ];
        let domains = allowed_domains(&listed).unwrap();
        assert_eq!(domains, ["corp.example", "example.org"]);
        for ok in ["ana@corp.example", "Ana@EU.Corp.Example", "bo@example.org"] {
            assert!(in_domains(ok, &domains), "{ok}");
        }
        for bad in ["ana@example.com", "x@evilcorp.example", "x@corp.example.evil.io", "corp.example"] {
            assert!(!in_domains(bad, &domains), "{bad}");
        }
        let bad = vec![("FINOPS_OWNER_DOMAINS".to_owned(), "not a domain".to_owned())];
        assert!(allowed_domains(&bad).is_err());
    }
}
