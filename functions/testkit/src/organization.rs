//! An AWS Organization on moto: the hub creates it, member accounts are created in it (and moved into OUs), and a
//! member's own resources are seeded through OrganizationAccountAccessRole, as an administrator would. The member
//! roles the StackSet deploys are created by [`create_member_role`]; leave one out to have an unreachable account.

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

pub struct Organization {
    pub root_id: String,
    client: aws_sdk_organizations::Client,
}

/// Creates the organization, the hub (the caller) as its management account.
pub async fn create_organization(hub: &SdkConfig) -> Organization {
    let client = aws_sdk_organizations::Client::new(hub);
    client
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let roots = client.list_roots().send().await.expect("ListRoots");
    let root_id = roots.roots()[0].id().expect("root id").to_owned();
    Organization { root_id, client }
}

impl Organization {
    pub async fn create_ou(&self, name: &str) -> String {
        let ou = self
            .client
            .create_organizational_unit()
            .parent_id(&self.root_id)
            .name(name)
            .send()
            .await
            .expect("CreateOrganizationalUnit");
        ou.organizational_unit().and_then(|u| u.id()).expect("OU id").to_owned()
    }

    /// A new member account, moved under `ou` when given. Returns its id.
    pub async fn create_account(&self, name: &str, ou: Option<&str>) -> String {
        let created = self
            .client
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("CreateAccount");
        let id = created.create_account_status().and_then(|s| s.account_id()).expect("account id").to_owned();
        if let Some(ou) = ou {
            self.client
                .move_account()
                .account_id(&id)
                .source_parent_id(&self.root_id)
                .destination_parent_id(ou)
                .send()
                .await
                .expect("MoveAccount");
        }
        id
    }

    pub async fn tag_account(&self, id: &str, key: &str, value: &str) {
        let tag = aws_sdk_organizations::types::Tag::builder().key(key).value(value).build().expect("tag");
        self.client.tag_resource().resource_id(id).tags(tag).send().await.expect("TagResource");
    }

    /// Closes the account: Organizations then lists it as suspended.
    pub async fn close_account(&self, id: &str) {
        self.client.close_account().account_id(id).send().await.expect("CloseAccount");
    }
}

/// Acts in a member account as its administrator (OrganizationAccountAccessRole), to seed its fleet and roles.
pub async fn member_admin(hub: &SdkConfig, account_id: &str) -> SdkConfig {
    let sts = aws_sdk_sts::Client::new(hub);
    let assumed = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"))
        .role_session_name("seed")
        .send()
        .await
        .expect("AssumeRole OrganizationAccountAccessRole");
    let c = assumed.credentials().expect("credentials");
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "member-admin",
    );
    hub.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build()
}

/// The role the member StackSet deploys, trusting the hub account. Sent to moto as IAM's query API by hand: the IAM
/// SDK crate is about 40 s of CPU in every cold build (a tenth of it on 2 cores) for this one call on moto. moto
/// takes the account from the access key in the Authorization header (the member's assumed-role key) and checks no
/// signature.
pub async fn create_member_role(member: &SdkConfig, role_name: &str, hub_account: &str) {
    use aws_credential_types::provider::ProvideCredentials;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{hub_account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    let credentials = member
        .credentials_provider()
        .expect("the member's credentials")
        .provide_credentials()
        .await
        .expect("the member's credentials");
    let endpoint = member.endpoint_url().and_then(|e| url::Url::parse(e).ok()).expect("a moto endpoint");
    assert_eq!(endpoint.host_str(), Some("127.0.0.1"), "moto on this machine");
    let port = endpoint.port().expect("moto's port in the endpoint");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "CreateRole")
        .append_pair("Version", "2010-05-08")
        .append_pair("RoleName", role_name)
        .append_pair("AssumeRolePolicyDocument", &trust)
        .finish();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        credentials.access_key_id()
    );
    let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", authorization.as_str())];
    let (status, body) =
        crate::moto::http_with_headers(port, "POST", "/", &headers, &form).await.expect("CreateRole on moto");
    assert!(status == 200 && body.contains("<CreateRoleResponse"), "CreateRole {role_name}: HTTP {status}: {body}");
}

/// A member account's own small fleet, in each region: an idle dev box (the saving), an idle production database
/// (the trap: never stopped, whatever account it is in) and a busy API server, each with the lookback's metrics.
/// `member`: the account's administrator ([`member_admin`]); names start with the account's name.
pub async fn seed_member_fleet(
    member: &SdkConfig,
    account_name: &str,
    regions: &[&str],
    window: &finops_core::LookbackWindow,
) -> Vec<crate::seed::SeededInstance> {
    use crate::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec, SeededInstance};
    let mut seeded = Vec::new();
    for region in regions {
        let config = member.to_builder().region(aws_config::Region::new(region.to_string())).build();
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let cw = aws_sdk_cloudwatch::Client::new(&config);
        let image = linux_image_id(&ec2).await;
        let fleet = [
            ("idle dev box", "etl-dev", "t3.large", "dev", DayProfile::idle()),
            ("idle production database (trap)", "orders-db", "m5.large", "production", DayProfile::idle()),
            ("busy server", "api", "m5.large", "staging", DayProfile::busy()),
        ];
        for (role, what, instance_type, environment, profile) in fleet {
            let name = format!("{account_name}-{what}");
            let spec = InstanceSpec::new(&name, instance_type)
                .tag("Environment", environment)
                .tag("Owner", &format!("{account_name}@example.com"))
                .launched_days_ago(60.0);
            let id = launch(&ec2, &image, &spec, 1).await.remove(0);
            put_daily_metrics(&cw, &id, window, |_| Some(profile)).await;
            seeded.push(SeededInstance { instance_id: id, region: region.to_string(), name, role });
        }
        // And a volume left behind 90 days ago, attached to nothing since.
        let name = format!("{account_name}-old-volume");
        let id = crate::seed::old_unattached_volume(&ec2, region, &name).await;
        seeded.push(SeededInstance { instance_id: id, region: region.to_string(), name, role: "unattached volume" });
    }
    seeded
}
