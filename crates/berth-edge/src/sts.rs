//! STS over the query protocol: just GetCallerIdentity, so that
//! `aws sts get-caller-identity` answers with the caller's identity.

use berth_control::Caller;
use berth_model::{ApiError, ErrorCode};

use crate::wire::{xml_escape, STS_XMLNS};

pub(crate) fn handle(
    params: &[(String, String)],
    caller: &Caller,
    account_id: &str,
    request_id: &str,
) -> Result<String, ApiError> {
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    match action {
        "GetCallerIdentity" => Ok(format!(
            "<GetCallerIdentityResponse xmlns=\"{STS_XMLNS}\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            xml_escape(&caller.principal_arn),
            xml_escape(&user_id(caller, account_id)),
            xml_escape(account_id),
            xml_escape(request_id),
        )),
        other => Err(ApiError::new(
            ErrorCode::InvalidAction,
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

/// The root user's id is the account id; other principals use their key.
fn user_id(caller: &Caller, account_id: &str) -> String {
    if caller.principal_arn.ends_with(":root") {
        account_id.to_string()
    } else {
        caller.access_key_id.clone()
    }
}
