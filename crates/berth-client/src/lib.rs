//! A small SigV4-signed client for Berth's AWS JSON 1.1 APIs, shared by
//! the agent and the load generator. Responses come back as JSON documents;
//! API errors keep their `__type`, message and HTTP status.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const ECR_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// A failed call: the API's error, or the transport's.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{code}: {message}")]
    Api {
        code: String,
        message: String,
        status: u16,
    },
    #[error("transport error: {0}")]
    Transport(String),
}

impl CallError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Transport(_) => None,
        }
    }
}

/// Signed ECS calls to one endpoint.
#[derive(Clone, Debug)]
pub struct EcsClient {
    endpoint: String,
    authority: String,
    region: String,
    credentials: Credentials,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl EcsClient {
    /// `endpoint` is `http://host:port`.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
        session_token: Option<String>,
    ) -> Result<Self, CallError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| CallError::Transport(format!("bad endpoint: {e}")))?;
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| CallError::Transport("endpoint has no host".into()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            endpoint,
            authority,
            region: region.to_string(),
            credentials: Credentials::new(
                access_key,
                secret_key,
                session_token,
                None,
                "berth-agent",
            ),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The endpoint, `http://host:port`.
    /// The same client (endpoint, region, connection pool) signing with
    /// another long-term key.
    pub fn with_credentials(&self, access_key: &str, secret_key: &str) -> Self {
        Self {
            credentials: Credentials::new(access_key, secret_key, None, None, "berth-agent"),
            ..self.clone()
        }
    }

    /// The access key id requests are signed with.
    pub fn access_key_id(&self) -> &str {
        self.credentials.access_key_id()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint's `host:port`: also the address of Berth's registry.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and the session
    /// token when there is one) for a GET of `url` with no body, signing
    /// only the `host` header: what a websocket upgrade to the control
    /// plane carries, whatever headers the websocket library adds.
    pub fn sign_get(
        &self,
        url: &str,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport(e.to_string());
        let uri: http::Uri = url.parse().map_err(|e| transport(&e))?;
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| CallError::Transport("url has no host".into()))?;
        let req = http::Request::builder()
            .method("GET")
            .uri(url)
            .header("host", authority)
            .body(())
            .map_err(|e| transport(&e))?;
        self.signature_headers("ecs", "GET", url, &req, b"")
    }

    fn signature_headers<B>(
        &self,
        signing_name: &str,
        method: &str,
        uri: &str,
        req: &http::Request<B>,
        payload: &[u8],
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport(e.to_string());
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| transport(&e))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect();
        let signable = SignableRequest::new(
            method,
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(payload),
        )
        .map_err(|e| transport(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| transport(&e))?
            .into_parts();
        let mut out = Vec::new();
        for (name, value) in instructions.headers() {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| transport(&e))?;
            let value = http::HeaderValue::from_str(value).map_err(|e| transport(&e))?;
            out.push((name, value));
        }
        Ok(out)
    }

    /// Calls ECS `operation` with `body`; returns the response document.
    pub async fn call(&self, operation: &str, body: &Value) -> Result<Value, CallError> {
        self.call_target("ecs", &format!("{ECS_PREFIX}{operation}"), body)
            .await
    }

    /// Calls ECR `operation` with `body` on the same endpoint.
    pub async fn call_ecr(&self, operation: &str, body: &Value) -> Result<Value, CallError> {
        self.call_target("ecr", &format!("{ECR_PREFIX}{operation}"), body)
            .await
    }

    async fn call_target(
        &self,
        signing_name: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport(e.to_string());
        let payload = serde_json::to_vec(body).map_err(|e| transport(&e))?;
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("host", &self.authority)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(payload.clone())))
            .map_err(|e| transport(&e))?;
        let uri = req.uri().to_string();
        for (name, value) in self.signature_headers(signing_name, "POST", &uri, &req, &payload)? {
            req.headers_mut().insert(name, value);
        }
        let resp = self.http.request(req).await.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(&e))?
            .to_bytes();
        let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(doc);
        }
        let code = doc
            .get("__type")
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        let code = code.rsplit('#').next().unwrap_or(code).to_string();
        let message = doc
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Err(CallError::Api {
            code,
            message,
            status,
        })
    }
}
