//! Reading the messages the request step sends, as an approver's (or owner's) mail client shows them: one digest per
//! approver per run with a section per proposal, one undo offer per approver per run, one notice per owner. What the
//! demo, the chaos approvers and the end-to-end tests click.

/// One proposal's section of a digest: the resource, and the links of its three decisions (as they appear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub resource_id: String,
    pub approval_id: String,
    pub approve: String,
    pub deny: String,
    pub snooze: String,
}

/// The address a message says it was sent to ("This email was sent to ...").
pub fn recipient(message: &str) -> Option<String> {
    let at = message.find("This email was sent to ")? + "This email was sent to ".len();
    let word = message[at..].split_whitespace().next()?;
    Some(word.trim_end_matches(['.', ':', ';']).to_owned()).filter(|r| r.contains('@'))
}

/// The link at the end of the first line of `section` whose trimmed text starts with `label`.
fn link(section: &str, label: &str) -> Option<String> {
    section
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .filter(|u| u.contains("/approvals/"))
        .map(str::to_owned)
}

/// The approval id of a link (`.../approvals/<id>?...`).
pub fn approval_id(url: &str) -> Option<String> {
    let at = url.find("/approvals/")? + "/approvals/".len();
    Some(url[at..].split('?').next()?.to_owned())
}

/// The path and query of a link, for a request to the approval page.
pub fn path_and_query(url: &str) -> &str {
    url.find("/approvals/").map_or(url, |at| &url[at..])
}

/// Every proposal of a digest, in the order shown. A section without its three links is left out (and so fails a
/// caller that expects it).
pub fn offers(digest: &str) -> Vec<Offer> {
    digest
        .split("\n=== ")
        .skip(1)
        .filter_map(|section| {
            let heading = section.lines().next()?;
            let resource_id = heading.trim_end_matches(" ===").split_whitespace().last()?.to_owned();
            let approve = link(section, "Approve")?;
            Some(Offer {
                resource_id,
                approval_id: approval_id(&approve)?,
                deny: link(section, "Deny:")?,
                snooze: link(section, "Snooze")?,
                approve,
            })
        })
        .collect()
}

/// One undo of an undo offer: the resource, what the link does, the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoOffer {
    pub resource_id: String,
    pub label: String,
    pub url: String,
}

/// Every undo of an undo offer ("- <what> (<id>) in <region>, approved by ..." then "  <label>: <link>").
pub fn undo_offers(message: &str) -> Vec<UndoOffer> {
    let lines: Vec<&str> = message.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let (what, action) = (pair[0].strip_prefix("- ")?, pair[1].trim_start());
            let (label, url) = action.split_once(": ")?;
            let before = what.rsplit_once(") in ")?.0;
            let resource_id = before.rsplit_once('(')?.1.to_owned();
            url.contains("/approvals/").then(|| UndoOffer { resource_id, label: label.to_owned(), url: url.to_owned() })
        })
        .collect()
}

/// Every keep-it link of an owner's notice, by resource ("--- <what> (<id>) in <region>: ..." then the link).
pub fn keep_links(notice: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut resource = None;
    for line in notice.lines() {
        if let Some(heading) = line.strip_prefix("--- ") {
            resource = heading.rsplit_once(") in ").and_then(|(b, _)| b.rsplit_once('(')).map(|(_, id)| id.to_owned());
        } else if line.trim_start().starts_with("Keep it") {
            if let (Some(id), Some(url)) = (resource.clone(), line.split_whitespace().last()) {
                found.push((id, url.to_owned()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digests_sections_undo_offers_and_owner_notices_are_read_as_shown() {
        let digest = "finops-agent's run r proposes 2 changes that you may decide.\n\n\
             This email was sent to ana@example.com. Its links are yours.\n\n\
             === 1 of 2: snapshot and stop i-0aaa ===\nInstance: i-0aaa\n\
             \x20 Approve (snapshot first, then stop): https://x/approvals/aaaa?action=approve&to=a\n\
             \x20 Deny:                                https://x/approvals/aaaa?action=deny&to=a\n\
             \x20 Snooze 7 days:                       https://x/approvals/aaaa?action=snooze&to=a\n\
             \n=== 2 of 2: release eipalloc-1 ===\n\
             \x20 Approve (release the address):       https://x/approvals/bbbb?action=approve&to=a\n\
             \x20 Deny:                                https://x/approvals/bbbb?action=deny&to=a\n\
             \x20 Snooze 7 days:                       https://x/approvals/bbbb?action=snooze&to=a\n";
        let offers = offers(digest);
        assert_eq!(offers.len(), 2);
        assert_eq!((offers[0].resource_id.as_str(), offers[0].approval_id.as_str()), ("i-0aaa", "aaaa"));
        assert_eq!(offers[1].deny, "https://x/approvals/bbbb?action=deny&to=a");
        assert_eq!(recipient(digest).as_deref(), Some("ana@example.com"));
        assert_eq!(path_and_query(&offers[0].approve), "/approvals/aaaa?action=approve&to=a");
        let undo =
            "finops-agent's run r did what was approved.\n\n- snapshot and stop instance \"dev (x)\" (i-0aaa) in \
             ap-southeast-2, approved by ana@example.com\n  Start it again: https://x/approvals/cccc?action=undo\n";
        assert_eq!(
            undo_offers(undo),
            [UndoOffer {
                resource_id: "i-0aaa".into(),
                label: "Start it again".into(),
                url: "https://x/approvals/cccc?action=undo".into()
            }]
        );
        let notice = "--- instance \"dev\" (i-0aaa) in ap-southeast-2: proposed to stop it ---\nWhy:\n  - idle\n  \
             Keep it (7 days): https://x/approvals/dddd?action=owner-snooze\n";
        assert_eq!(
            keep_links(notice),
            [("i-0aaa".to_owned(), "https://x/approvals/dddd?action=owner-snooze".to_owned())]
        );
    }
}
