//! The price book: on-demand and EBS prices from the AWS Price List Query API (GetProducts), cached for the life
//! of the process (a Lambda container serves many runs), falling back to the embedded table of `finops-core` when
//! the API is off, unreachable or has no answer. Every quote carries its source.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use aws_sdk_pricing::types::{Filter, FilterType};
use finops_core::pricing::{embedded_ebs_gb_month, embedded_hourly, Quote};
use finops_core::{PriceSource, VolumeRecord};

use crate::error::FinopsError;

/// The Price List Query API, narrowed to the two questions the savings estimate asks.
pub trait PriceListApi: Send + Sync {
    fn on_demand_hourly(
        &self,
        region: &str,
        instance_type: &str,
        windows: bool,
    ) -> impl Future<Output = Result<Option<f64>, FinopsError>> + Send;
    fn ebs_gb_month(
        &self,
        region: &str,
        volume_type: &str,
    ) -> impl Future<Output = Result<Option<f64>, FinopsError>> + Send;
    /// The hourly charge of a product family in a region (`AmazonEC2` "NAT Gateway", `AWSELB`
    /// "Load Balancer-Application", ...): the price dimension billed in hours, not the traffic's.
    fn hourly(
        &self,
        service_code: &'static str,
        product_family: &'static str,
        region: &str,
    ) -> impl Future<Output = Result<Option<f64>, FinopsError>> + Send;
}

/// What an hourly-billed resource kind is in the Price List, and its embedded fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HourlyProduct {
    NatGateway,
    LoadBalancer(finops_core::pricing::LoadBalancerType),
}

impl HourlyProduct {
    fn service_and_family(self) -> (&'static str, &'static str) {
        use finops_core::pricing::LoadBalancerType;
        match self {
            Self::NatGateway => ("AmazonEC2", "NAT Gateway"),
            Self::LoadBalancer(LoadBalancerType::Application) => ("AWSELB", "Load Balancer-Application"),
            Self::LoadBalancer(LoadBalancerType::Network) => ("AWSELB", "Load Balancer-Network"),
            Self::LoadBalancer(LoadBalancerType::Gateway) => ("AWSELB", "Load Balancer-Gateway"),
        }
    }

    fn embedded(self, region: &str) -> Option<Quote> {
        match self {
            Self::NatGateway => finops_core::pricing::embedded_nat_gateway_hourly(region),
            Self::LoadBalancer(t) => finops_core::pricing::embedded_load_balancer_hourly(t, region),
        }
    }
}

pub struct SdkPriceList {
    client: aws_sdk_pricing::Client,
}

impl SdkPriceList {
    /// The Price List API is served from us-east-1 (and two other regions) whatever region is being priced.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self { client: aws_sdk_pricing::Client::new(&crate::sdk::for_region(config, "us-east-1")) }
    }

    pub fn from_client(client: aws_sdk_pricing::Client) -> Self {
        Self { client }
    }

    async fn first_price(
        &self,
        filters: Vec<(&str, String)>,
        operation: &'static str,
    ) -> Result<Option<f64>, FinopsError> {
        let documents = self.products("AmazonEC2", filters, operation).await?;
        Ok(documents.iter().find_map(|doc| on_demand_usd(doc)))
    }

    /// GetProducts of a service with these TermMatch filters: the Price List documents.
    async fn products(
        &self,
        service_code: &str,
        filters: Vec<(&str, String)>,
        operation: &'static str,
    ) -> Result<Vec<String>, FinopsError> {
        let filters: Vec<Filter> = filters
            .into_iter()
            .map(|(field, value)| {
                Filter::builder()
                    .r#type(FilterType::TermMatch)
                    .field(field)
                    .value(value)
                    .build()
                    .expect("field and value set")
            })
            .collect();
        let out = self
            .client
            .get_products()
            .service_code(service_code)
            .set_filters(Some(filters))
            .format_version("aws_v1")
            .max_results(10)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("Pricing", operation, e))?;
        Ok(out.price_list().to_vec())
    }
}

impl PriceListApi for SdkPriceList {
    async fn on_demand_hourly(
        &self,
        region: &str,
        instance_type: &str,
        windows: bool,
    ) -> Result<Option<f64>, FinopsError> {
        let os = if windows { "Windows" } else { "Linux" };
        self.first_price(
            vec![
                ("instanceType", instance_type.to_owned()),
                ("regionCode", region.to_owned()),
                ("operatingSystem", os.to_owned()),
                ("tenancy", "Shared".to_owned()),
                ("preInstalledSw", "NA".to_owned()),
                ("capacitystatus", "Used".to_owned()),
                ("licenseModel", "No License required".to_owned()),
            ],
            "GetProducts",
        )
        .await
    }

    async fn ebs_gb_month(&self, region: &str, volume_type: &str) -> Result<Option<f64>, FinopsError> {
        self.first_price(
            vec![
                ("productFamily", "Storage".to_owned()),
                ("regionCode", region.to_owned()),
                ("volumeApiName", volume_type.to_owned()),
            ],
            "GetProducts",
        )
        .await
    }

    async fn hourly(
        &self,
        service_code: &'static str,
        product_family: &'static str,
        region: &str,
    ) -> Result<Option<f64>, FinopsError> {
        let filters = vec![("productFamily", product_family.to_owned()), ("regionCode", region.to_owned())];
        let documents = self.products(service_code, filters, "GetProducts").await?;
        Ok(documents.iter().find_map(|doc| on_demand_usd_per_hour(doc)))
    }
}

/// The first positive USD on-demand price of a dimension billed per hour (unit `Hrs`) in one Price List document:
/// a NAT gateway's or a load balancer's hours, not its gigabytes or capacity units.
pub fn on_demand_usd_per_hour(price_list_document: &str) -> Option<f64> {
    first_on_demand_usd(price_list_document, Some("Hrs"))
}

/// The first positive USD on-demand price in one Price List document
/// (`terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`).
pub fn on_demand_usd(price_list_document: &str) -> Option<f64> {
    first_on_demand_usd(price_list_document, None)
}

/// The first positive USD on-demand price, of a dimension in `unit` when one is named.
fn first_on_demand_usd(price_list_document: &str, unit: Option<&str>) -> Option<f64> {
    let doc: serde_json::Value = serde_json::from_str(price_list_document).ok()?;
    let offers = doc.get("terms")?.get("OnDemand")?.as_object()?;
    offers
        .values()
        .filter_map(|offer| offer.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|dim| unit.is_none_or(|u| dim.get("unit").and_then(|v| v.as_str()) == Some(u)))
        .filter_map(|dim| dim.get("pricePerUnit")?.get("USD")?.as_str()?.parse::<f64>().ok())
        .find(|usd| *usd > 0.0)
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum PriceKey {
    Instance { region: String, instance_type: String, windows: bool },
    Volume { region: String, volume_type: String },
    Hourly { region: String, product: HourlyProduct },
}

/// Cached prices with fallback. After the API fails once (no permission, no network, emulated AWS), it is not
/// asked again by this process: one warning instead of a failed call per instance type.
pub struct PriceBook<P> {
    api: Option<P>,
    cache: Mutex<HashMap<PriceKey, Option<Quote>>>,
    api_disabled: Mutex<Option<String>>,
    /// GetProducts calls made by this book (a container's lifetime): a run's own cost counts them.
    api_calls: AtomicUsize,
}

impl<P: PriceListApi> PriceBook<P> {
    pub fn new(api: Option<P>) -> Self {
        Self { api, cache: Mutex::default(), api_disabled: Mutex::default(), api_calls: AtomicUsize::new(0) }
    }

    /// Price List API calls made so far (cache misses while the API is usable).
    pub fn api_calls(&self) -> usize {
        self.api_calls.load(Ordering::Relaxed)
    }

    /// Why the API is not used (never configured, or its first failure).
    pub fn api_unavailable_reason(&self) -> Option<String> {
        if self.api.is_none() {
            return Some("price list API not configured".into());
        }
        self.api_disabled.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn instance_hourly(&self, region: &str, instance_type: &str, windows: bool) -> Option<Quote> {
        let key = PriceKey::Instance { region: region.into(), instance_type: instance_type.into(), windows };
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let from_api = match self.usable_api() {
            Some(api) => self.record_failure(api.on_demand_hourly(region, instance_type, windows).await),
            None => None,
        };
        let quote = from_api
            .map(|usd| Quote { usd, source: PriceSource::PriceListApi })
            .or_else(|| embedded_hourly(instance_type, region, windows));
        self.store(key, quote.clone());
        quote
    }

    /// Monthly storage price of one volume.
    pub async fn volume_monthly(&self, region: &str, volume: &VolumeRecord) -> Option<f64> {
        self.ebs_gb_month(region, &volume.volume_type).await.map(|q| q.usd * f64::from(volume.size_gib))
    }

    /// The storage price of a volume type per GB-month, with where it came from.
    pub async fn ebs_gb_month(&self, region: &str, volume_type: &str) -> Option<Quote> {
        let key = PriceKey::Volume { region: region.into(), volume_type: volume_type.to_owned() };
        match self.cached(&key) {
            Some(hit) => hit,
            None => {
                let from_api = match self.usable_api() {
                    Some(api) => self.record_failure(api.ebs_gb_month(region, volume_type).await),
                    None => None,
                };
                let quote = from_api
                    .map(|usd| Quote { usd, source: PriceSource::PriceListApi })
                    .or_else(|| embedded_ebs_gb_month(volume_type, region));
                self.store(key, quote.clone());
                quote
            }
        }
    }

    /// The hourly charge of a NAT gateway or a load balancer in a region, with where it came from.
    pub async fn hourly(&self, region: &str, product: HourlyProduct) -> Option<Quote> {
        let key = PriceKey::Hourly { region: region.into(), product };
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let (service, family) = product.service_and_family();
        let from_api = match self.usable_api() {
            Some(api) => self.record_failure(api.hourly(service, family, region).await),
            None => None,
        };
        let quote =
            from_api.map(|usd| Quote { usd, source: PriceSource::PriceListApi }).or_else(|| product.embedded(region));
        self.store(key, quote.clone());
        quote
    }

    /// The API, when configured and not failed; taking it counts one call.
    fn usable_api(&self) -> Option<&P> {
        let disabled = self.api_disabled.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let api = self.api.as_ref().filter(|_| !disabled);
        if api.is_some() {
            self.api_calls.fetch_add(1, Ordering::Relaxed);
        }
        api
    }

    fn record_failure(&self, result: Result<Option<f64>, FinopsError>) -> Option<f64> {
        match result {
            Ok(price) => price,
            Err(e) => {
                tracing::warn!(error = %e, "price list API failed; using the embedded price table for this run");
                *self.api_disabled.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                None
            }
        }
    }

    fn cached(&self, key: &PriceKey) -> Option<Option<Quote>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn store(&self, key: PriceKey, quote: Option<Quote>) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, quote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_on_demand_price_from_price_list_document() {
        let doc = r#"{"product":{"attributes":{"instanceType":"m5.large"}},"terms":{"OnDemand":{"X.JRTCKXETXF":{"priceDimensions":{"X.JRTCKXETXF.6YS6EN2CT7":{"unit":"Hrs","pricePerUnit":{"USD":"0.0960000000"}}}}}}}"#;
        assert_eq!(on_demand_usd(doc), Some(0.096));
        assert_eq!(on_demand_usd(r#"{"terms":{}}"#), None);
        assert_eq!(on_demand_usd("not json"), None);
        let zero = r#"{"terms":{"OnDemand":{"a":{"priceDimensions":{"b":{"pricePerUnit":{"USD":"0.0000000000"}}}}}}}"#;
        assert_eq!(on_demand_usd(zero), None, "zero-priced dimensions (reservations) are not a price");
    }

    #[test]
    fn an_hourly_price_is_the_dimension_billed_in_hours_not_the_traffic() {
        // A NAT gateway's product: $0.045 per GB processed and $0.059 per hour (Sydney), in either order.
        let nat = r#"{"terms":{"OnDemand":{"o":{"priceDimensions":{
            "bytes":{"unit":"GB","pricePerUnit":{"USD":"0.0590000000"}},
            "hours":{"unit":"Hrs","pricePerUnit":{"USD":"0.0590000000"}}}}}}}"#;
        assert_eq!(on_demand_usd_per_hour(nat), Some(0.059));
        let lcu_only = r#"{"terms":{"OnDemand":{"o":{"priceDimensions":{"lcu":{"unit":"LCU-Hrs","pricePerUnit":{"USD":"0.008"}}}}}}}"#;
        assert_eq!(on_demand_usd_per_hour(lcu_only), None, "capacity units are not the hourly charge");
    }

    /// A Price List that knows one product family, to see the book ask it and fall back when it does not know.
    struct OneFamily;

    impl PriceListApi for OneFamily {
        async fn on_demand_hourly(&self, _: &str, _: &str, _: bool) -> Result<Option<f64>, FinopsError> {
            Ok(None)
        }
        async fn ebs_gb_month(&self, _: &str, _: &str) -> Result<Option<f64>, FinopsError> {
            Ok(None)
        }
        async fn hourly(
            &self,
            service: &'static str,
            family: &'static str,
            _: &str,
        ) -> Result<Option<f64>, FinopsError> {
            Ok(((service, family) == ("AmazonEC2", "NAT Gateway")).then_some(0.059))
        }
    }

    #[tokio::test]
    async fn hourly_prices_come_from_the_price_list_then_the_embedded_table() {
        use finops_core::pricing::LoadBalancerType;
        let book = PriceBook::new(Some(OneFamily));
        let nat = book.hourly("ap-southeast-2", HourlyProduct::NatGateway).await.unwrap();
        assert_eq!((nat.usd, nat.source), (0.059, PriceSource::PriceListApi));
        let alb =
            book.hourly("ap-southeast-2", HourlyProduct::LoadBalancer(LoadBalancerType::Application)).await.unwrap();
        assert!((alb.usd - 0.028125).abs() < 1e-9, "0.0225 x 1.25: {alb:?}");
        assert!(matches!(alb.source, PriceSource::EmbeddedTable { .. }), "{alb:?}");
        assert_eq!(book.api_calls(), 2);
        book.hourly("ap-southeast-2", HourlyProduct::NatGateway).await;
        assert_eq!(book.api_calls(), 2, "cached");
    }
}
