//! Region codes the tool accepts. A typo in a schedule's input (`ap-southest-2`) must fail loudly with a typed
//! error rather than make the SDK resolve an endpoint that does not exist and time out.

/// Public AWS regions, GovCloud and China, as listed in the AWS general reference (checked 2026-11).
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

pub fn is_known_region(region: &str) -> bool {
    KNOWN_REGIONS.contains(&region)
}

/// Parses a comma-separated list (`ap-southeast-2, us-east-1`), dropping duplicates but keeping order.
pub fn parse_region_list(list: &str) -> Result<Vec<String>, String> {
    let mut regions: Vec<String> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        validate_region(part)?;
        if !regions.iter().any(|r| r == part) {
            regions.push(part.to_owned());
        }
    }
    if regions.is_empty() {
        return Err("no region given".into());
    }
    Ok(regions)
}

pub fn validate_region(region: &str) -> Result<(), String> {
    if is_known_region(region) {
        Ok(())
    } else {
        Err(format!("unknown region {region:?} (expected a region code such as ap-southeast-2 or us-east-1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_with_spaces_and_duplicates() {
        assert_eq!(
            parse_region_list(" ap-southeast-2, us-east-1,ap-southeast-2 ").unwrap(),
            vec!["ap-southeast-2", "us-east-1"]
        );
    }

    #[test]
    fn rejects_typos_and_empty_lists() {
        assert!(parse_region_list("ap-southest-2").unwrap_err().contains("ap-southest-2"));
        assert!(parse_region_list(" , ").is_err());
        assert!(validate_region("US-EAST-1").is_err());
    }
}
