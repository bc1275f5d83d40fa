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
            .service_code("AmazonEC2")
            .set_filters(Some(filters))
            .format_version("aws_v1")
            .max_results(10)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("Pricing", operation, e))?;
        Ok(out.price_list().iter().find_map(|doc| on_demand_usd(doc)))
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
}

/// The first positive USD on-demand price in one Price List document
/// (`terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`).
pub fn on_demand_usd(price_list_document: &str) -> Option<f64> {
    let doc: serde_json::Value = serde_json::from_str(price_list_document).ok()?;
    let offers = doc.get("terms")?.get("OnDemand")?.as_object()?;
    offers
        .values()
        .filter_map(|offer| offer.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter_map(|dim| dim.get("pricePerUnit")?.get("USD")?.as_str()?.parse::<f64>().ok())
        .find(|usd| *usd > 0.0)
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum PriceKey {
    Instance { region: String, instance_type: String, windows: bool },
    Volume { region: String, volume_type: String },
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
}
