//! The gateway executor: the bulkhead gateway's admin API (docs/gateway.md).
//! A selector or weights change is one `PUT` that the gateway applies
//! atomically before it answers, so when the call returns the next request
//! already goes to the new pool.

use crate::executor::{ExecError, Executor, Labels, WeightedPool};
use http_client::{Url, bearer, request};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one admin call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct GatewayExecutor {
    admin: String,
    token: Option<String>,
}

impl GatewayExecutor {
    /// `admin` is the admin API's base URL (`http://127.0.0.1:9901`).
    ///
    /// # Errors
    /// When the URL is not a plain `http://` URL.
    pub fn new(admin: &str, token: Option<String>) -> Result<GatewayExecutor, ExecError> {
        Url::parse(admin).map_err(|detail| ExecError::Refused {
            target: admin.to_string(),
            detail,
        })?;
        Ok(GatewayExecutor {
            admin: admin.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// `GET /state`: every service's live pools, as the gateway prints them.
    ///
    /// # Errors
    /// When the gateway cannot be reached or answers with an error.
    pub fn state(&self) -> Result<serde_json::Value, ExecError> {
        let body = self.call("GET", "/state", b"")?;
        serde_json::from_slice(&body).map_err(|e| self.refused("/state", e.to_string()))
    }

    fn refused(&self, path: &str, detail: String) -> ExecError {
        ExecError::Refused {
            target: format!("gateway {}{path}", self.admin),
            detail,
        }
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, ExecError> {
        let url =
            Url::parse(&format!("{}{path}", self.admin)).map_err(|d| self.refused(path, d))?;
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(token) = &self.token {
            headers.push(bearer(token));
        }
        let response =
            request(method, &url, &headers, body, TIMEOUT).map_err(|error| ExecError::Http {
                target: "gateway".to_string(),
                error,
            })?;
        if response.status == 200 {
            return Ok(response.body);
        }
        let text = String::from_utf8_lossy(&response.body);
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        Err(self.refused(path, format!("HTTP {}: {detail}", response.status)))
    }
}

impl Executor for GatewayExecutor {
    fn kind(&self) -> &'static str {
        "gateway"
    }

    /// The gateway replaces the service's selector with `selector` (its
    /// endpoints belong to that service alone, so no `app` label is needed).
    fn set_selector(&mut self, service: &str, selector: &Labels) -> Result<(), ExecError> {
        let body = serde_json::to_vec(selector).expect("labels serialize");
        self.call("PUT", &format!("/services/{service}/selector"), &body)
            .map(drop)
    }

    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError> {
        let body = serde_json::to_vec(pools).expect("pools serialize");
        self.call("PUT", &format!("/services/{service}/weights"), &body)
            .map(drop)
    }

    fn routing(&mut self) -> Result<BTreeMap<String, String>, ExecError> {
        let state = self.state()?;
        let services = state["services"]
            .as_object()
            .ok_or_else(|| self.refused("/state", "no services in the answer".to_string()))?;
        Ok(services
            .iter()
            .map(|(name, pools)| (name.clone(), pools.to_string()))
            .collect())
    }
}
