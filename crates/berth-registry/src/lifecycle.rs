//! Lifecycle policies, as ECR evaluates them. Pure: a policy, the images
//! (tags and push times) and `now` in, the images to expire out.
//!
//! Rules run in ascending `rulePriority`. Each rule selects, among the
//! images no earlier rule selected, those matching its `tagStatus` (and,
//! for `tagged`, every entry of `tagPrefixList` or `tagPatternList`
//! matching at least one of the image's tags). An image selected by a
//! rule is never considered by a later one, whether or not that rule
//! expires it ("an image that matches the tagging requirements of a rule
//! cannot be expired by a rule with a lower priority"). Of its selection a
//! rule expires, for `imageCountMoreThan n`, all but the `n` most recently
//! pushed; for `sinceImagePushed n days`, those pushed more than `n` days
//! ago.

use serde::Deserialize;

use crate::meta::wildcard_match;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid json: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub rule_priority: i64,
    #[serde(default)]
    pub description: Option<String>,
    pub selection: Selection,
    pub action: Action,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    pub tag_status: String,
    #[serde(default)]
    pub tag_prefix_list: Option<Vec<String>>,
    #[serde(default)]
    pub tag_pattern_list: Option<Vec<String>>,
    pub count_type: String,
    #[serde(default)]
    pub count_unit: Option<String>,
    pub count_number: i64,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
}

/// An image as the evaluator sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub digest: String,
    pub tags: Vec<String>,
    /// Epoch seconds.
    pub pushed_at: f64,
}

/// An image a rule expires.
#[derive(Clone, Debug, PartialEq)]
pub struct Expiry {
    pub digest: String,
    pub rule_priority: i64,
}

fn invalid(m: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(m.into())
}

/// Parses and validates a policy text.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy =
        serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
    if policy.rules.is_empty() {
        return Err(invalid("the policy must have at least one rule"));
    }
    let mut priorities = std::collections::HashSet::new();
    let max_priority = policy
        .rules
        .iter()
        .map(|r| r.rule_priority)
        .max()
        .unwrap_or(0);
    let mut any_rules = 0;
    for r in &policy.rules {
        if r.rule_priority < 1 {
            return Err(invalid("rulePriority must be at least 1"));
        }
        if !priorities.insert(r.rule_priority) {
            return Err(invalid(format!(
                "rulePriority {} is used more than once",
                r.rule_priority
            )));
        }
        if r.action.kind != "expire" {
            return Err(invalid(format!(
                "action type '{}' is not supported",
                r.action.kind
            )));
        }
        let s = &r.selection;
        match s.tag_status.as_str() {
            "tagged" => {
                let lists = [&s.tag_prefix_list, &s.tag_pattern_list];
                let given: Vec<&Vec<String>> = lists.iter().filter_map(|l| l.as_ref()).collect();
                if given.len() != 1 || given[0].is_empty() {
                    return Err(invalid(
                        "a rule with tagStatus 'tagged' must have exactly one non-empty tagPrefixList or tagPatternList",
                    ));
                }
                if let Some(p) = &s.tag_pattern_list {
                    if p.iter().any(|x| x.matches('*').count() > 4) {
                        return Err(invalid("a tag pattern may have at most 4 wildcards"));
                    }
                }
            }
            "untagged" | "any" => {
                if s.tag_prefix_list.is_some() || s.tag_pattern_list.is_some() {
                    return Err(invalid(format!(
                        "tagPrefixList and tagPatternList are only allowed with tagStatus 'tagged', not '{}'",
                        s.tag_status
                    )));
                }
                if s.tag_status == "any" {
                    any_rules += 1;
                    if r.rule_priority != max_priority {
                        return Err(invalid(
                            "a rule with tagStatus 'any' must have the highest rulePriority",
                        ));
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "tagStatus '{other}' is not one of tagged, untagged, any"
                )))
            }
        }
        match (s.count_type.as_str(), s.count_unit.as_deref()) {
            ("imageCountMoreThan", None) => {}
            ("imageCountMoreThan", Some(_)) => {
                return Err(invalid(
                    "countUnit is not allowed with countType imageCountMoreThan",
                ))
            }
            ("sinceImagePushed", Some("days")) => {}
            ("sinceImagePushed", _) => {
                return Err(invalid(
                    "countType sinceImagePushed requires countUnit 'days'",
                ))
            }
            (other, _) => return Err(invalid(format!("countType '{other}' is not supported"))),
        }
        if s.count_number < 1 {
            return Err(invalid("countNumber must be at least 1"));
        }
    }
    if any_rules > 1 {
        return Err(invalid("only one rule may have tagStatus 'any'"));
    }
    Ok(policy)
}

fn selects(sel: &Selection, img: &Candidate) -> bool {
    match sel.tag_status.as_str() {
        "untagged" => img.tags.is_empty(),
        "any" => true,
        _ => {
            if img.tags.is_empty() {
                return false;
            }
            if let Some(prefixes) = &sel.tag_prefix_list {
                return prefixes
                    .iter()
                    .all(|p| img.tags.iter().any(|t| t.starts_with(p.as_str())));
            }
            if let Some(patterns) = &sel.tag_pattern_list {
                return patterns
                    .iter()
                    .all(|p| img.tags.iter().any(|t| wildcard_match(p, t)));
            }
            false
        }
    }
}

/// The images `policy` expires at `now` (epoch seconds).
pub fn evaluate(policy: &Policy, images: &[Candidate], now: f64) -> Vec<Expiry> {
    let mut rules = policy.rules.clone();
    rules.sort_by_key(|r| r.rule_priority);
    let mut claimed = vec![false; images.len()];
    let mut out = Vec::new();
    for rule in &rules {
        let mut selected: Vec<usize> = (0..images.len())
            .filter(|&i| !claimed[i] && selects(&rule.selection, &images[i]))
            .collect();
        for &i in &selected {
            claimed[i] = true;
        }
        // Newest first; ties broken by digest so results are stable.
        selected.sort_by(|&a, &b| {
            images[b]
                .pushed_at
                .total_cmp(&images[a].pushed_at)
                .then_with(|| images[a].digest.cmp(&images[b].digest))
        });
        let n = rule.selection.count_number.max(0) as usize;
        let expired: Vec<usize> = match rule.selection.count_type.as_str() {
            "imageCountMoreThan" => selected.into_iter().skip(n).collect(),
            _ => {
                let cutoff = now - (n as f64) * 86_400.0;
                selected
                    .into_iter()
                    .filter(|&i| images[i].pushed_at < cutoff)
                    .collect()
            }
        };
        out.extend(expired.into_iter().map(|i| Expiry {
            digest: images[i].digest.clone(),
            rule_priority: rule.rule_priority,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn img(d: &str, tags: &[&str], age_days: f64) -> Candidate {
        Candidate {
            digest: d.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: 1_000_000_000.0 - age_days * 86_400.0,
        }
    }

    const NOW: f64 = 1_000_000_000.0;

    #[test]
    fn count_and_age_rules_by_priority() {
        let p = parse_policy(
            r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}},
            {"rulePriority":3,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}
        ]}"#,
        )
        .unwrap();
        let images = vec![
            img("p1", &["prod-1"], 3.0),
            img("p2", &["prod-2"], 1.0),
            img("u-old", &[], 10.0),
            img("u-new", &[], 1.0),
            img("d1", &["dev-1"], 5.0),
            img("d2", &["dev-2"], 4.0),
            img("d3", &["dev-3"], 2.0),
        ];
        let out = evaluate(&p, &images, NOW);
        let got: Vec<(&str, i64)> = out
            .iter()
            .map(|e| (e.digest.as_str(), e.rule_priority))
            .collect();
        // prod: keep newest (p2), expire p1. untagged: u-old older than 7 days.
        // any: remaining d1,d2,d3 (u-new is claimed by rule 2): keep 2 newest.
        assert_eq!(got, vec![("p1", 1), ("u-old", 2), ("d1", 3)]);
    }

    #[test]
    fn patterns_require_every_entry() {
        let p = parse_policy(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["v*-rc*","*beta"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#,
        )
        .unwrap();
        let images = vec![
            img("both", &["v1-rc1", "beta"], 2.0),
            img("one", &["v1-rc2"], 2.0),
        ];
        let out = evaluate(&p, &images, NOW);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].digest, "both");
    }

    #[test]
    fn validation() {
        let bad = [
            r#"{"rules":[]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},{"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"delete"}}]}"#,
            "nope",
        ];
        for b in bad {
            assert!(parse_policy(b).is_err(), "{b}");
        }
    }
}
