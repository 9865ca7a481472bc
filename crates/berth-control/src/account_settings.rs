//! PutAccountSetting, PutAccountSettingDefault, ListAccountSettings,
//! DeleteAccountSetting.
//!
//! A setting's effective value for a principal is, in order: the value set
//! for that principal, the account default, and the built-in default of
//! `berth_model::account::SETTINGS` (reported with type `aws_managed`).

use berth_model::account::{setting_spec, Setting, SETTINGS};
use berth_model::ApiError;
use serde::{Deserialize, Serialize};

use crate::paging::page_size;
use crate::state::{self, put_op, read_modify_write, Change};
use crate::{keys, required, Cx};

fn principal_key(principal: &str) -> String {
    principal.replace('%', "%25").replace('/', "%2F")
}

fn check(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    let (allowed, _) = setting_spec(name).ok_or_else(|| {
        let names: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
        ApiError::invalid_parameter(format!(
            "Invalid setting name: {name}. Valid names are [{}].",
            names.join(", ")
        ))
    })?;
    if let Some(value) = value {
        if !allowed.contains(&value) {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid value for {name}: {value}. Valid values are [{}].",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_principal(cx: &Cx<'_>, principal: &str) -> Result<(), ApiError> {
    let ok = principal.starts_with("arn:")
        && principal.contains(":iam::")
        && principal.split(':').nth(4) == Some(cx.scope().account_id.as_str());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Invalid principalArn: {principal}."
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutAccountSettingRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SettingResponse {
    setting: Setting,
}

fn write(cx: &Cx<'_>, key: String, setting: Setting) -> Result<Setting, ApiError> {
    read_modify_write(cx.store(), &key.clone(), |_: Option<Setting>| {
        Ok(Change::Write(
            vec![put_op(key.clone(), &setting)?],
            setting.clone(),
        ))
    })
}

pub(crate) fn put(cx: &Cx<'_>, req: PutAccountSettingRequest) -> Result<SettingResponse, ApiError> {
    let name = required(&req.name, "name")?;
    let value = required(&req.value, "value")?;
    check(name, Some(value))?;
    let principal = req
        .principal_arn
        .clone()
        .unwrap_or_else(|| cx.caller().principal_arn.clone());
    check_principal(cx, &principal)?;
    let setting = Setting {
        name: Some(name.into()),
        value: Some(value.into()),
        principal_arn: Some(principal.clone()),
        r#type: Some("user".into()),
    };
    let setting = write(cx, keys::setting(&principal_key(&principal), name), setting)?;
    Ok(SettingResponse { setting })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutAccountSettingDefaultRequest {
    name: Option<String>,
    value: Option<String>,
}

pub(crate) fn put_default(
    cx: &Cx<'_>,
    req: PutAccountSettingDefaultRequest,
) -> Result<SettingResponse, ApiError> {
    let name = required(&req.name, "name")?;
    let value = required(&req.value, "value")?;
    check(name, Some(value))?;
    let setting = Setting {
        name: Some(name.into()),
        value: Some(value.into()),
        principal_arn: Some(cx.scope().root_principal()),
        r#type: Some("user".into()),
    };
    let setting = write(cx, keys::setting_default(name), setting)?;
    Ok(SettingResponse { setting })
}

/// The effective setting `name` for `principal`.
fn effective(cx: &Cx<'_>, principal: &str, name: &str) -> Result<Setting, ApiError> {
    if let Some(s) =
        state::get::<Setting>(cx.store(), &keys::setting(&principal_key(principal), name))?
    {
        return Ok(s.value);
    }
    if let Some(s) = state::get::<Setting>(cx.store(), &keys::setting_default(name))? {
        return Ok(s.value);
    }
    let default = setting_spec(name).map(|(_, d)| d).unwrap_or_default();
    Ok(Setting {
        name: Some(name.into()),
        value: Some(default.into()),
        principal_arn: Some(principal.into()),
        r#type: Some("aws_managed".into()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListAccountSettingsRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    effective_settings: Option<bool>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListAccountSettingsResponse {
    settings: Vec<Setting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListAccountSettingsRequest,
) -> Result<ListAccountSettingsResponse, ApiError> {
    if let Some(name) = &req.name {
        check(name, None)?;
    }
    if req.value.is_some() && req.name.is_none() {
        return Err(ApiError::invalid_parameter(
            "value can only be specified with name.",
        ));
    }
    let limit = page_size(req.max_results, 10, 10)?;
    let principal = req
        .principal_arn
        .clone()
        .unwrap_or_else(|| cx.caller().principal_arn.clone());
    check_principal(cx, &principal)?;
    let names: Vec<&str> = match &req.name {
        Some(n) => vec![n.as_str()],
        None => SETTINGS.iter().map(|(n, _, _)| *n).collect(),
    };
    let mut all = Vec::new();
    for name in names {
        let setting = if req.effective_settings.unwrap_or(false) {
            Some(effective(cx, &principal, name)?)
        } else {
            state::get::<Setting>(cx.store(), &keys::setting(&principal_key(&principal), name))?
                .map(|s| s.value)
        };
        if let Some(s) = setting {
            if req.value.is_none() || req.value == s.value {
                all.push(s);
            }
        }
    }
    // Tokens are offsets into this small, fixed-order list.
    let start = match req.next_token.as_deref() {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= all.len())
            .ok_or_else(|| ApiError::invalid_parameter("Invalid nextToken provided."))?,
    };
    let end = (start + limit).min(all.len());
    let next_token = (end < all.len()).then(|| end.to_string());
    Ok(ListAccountSettingsResponse {
        settings: all[start..end].to_vec(),
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteAccountSettingRequest {
    name: Option<String>,
    principal_arn: Option<String>,
}

pub(crate) fn delete(
    cx: &Cx<'_>,
    req: DeleteAccountSettingRequest,
) -> Result<SettingResponse, ApiError> {
    let name = required(&req.name, "name")?;
    check(name, None)?;
    let principal = req
        .principal_arn
        .clone()
        .unwrap_or_else(|| cx.caller().principal_arn.clone());
    check_principal(cx, &principal)?;
    let key = keys::setting(&principal_key(&principal), name);
    let deleted = read_modify_write(cx.store(), &key, |cur: Option<Setting>| match cur {
        Some(s) => Ok(Change::Write(
            vec![berth_store::Op::Delete { key: key.clone() }],
            Some(s),
        )),
        None => Ok(Change::Keep(None)),
    })?;
    let setting = match deleted {
        Some(s) => s,
        None => effective(cx, &principal, name)?,
    };
    Ok(SettingResponse { setting })
}
