//! Placement strategies and constraints, built from ECS's wire shapes.
//!
//! `{"type": "binpack", "field": "memory"}` becomes [`PlacementStrategy::from_wire`]`("binpack",
//! Some("memory"))`; `{"type": "memberOf", "expression": "..."}` becomes
//! [`PlacementConstraint::from_wire`]`("memberOf", Some("..."))`, with the expression parsed once here.
//!
//! ECS's defaults: a service (REPLICA) with no strategy spreads over `attribute:ecs.availability-zone`
//! and then over `instanceId` (the service scheduler balances zones, then instances within a zone);
//! RunTask with no strategy places tasks randomly (ECS: "when you run tasks with the RunTask API
//! action, tasks are placed randomly in a cluster").

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::ATTR_AVAILABILITY_ZONE;
use crate::query::{self, Expr, ParseError};

/// ECS's limit on the length of a `memberOf` expression.
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// A resource binpack can pack on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinpackField {
    /// CPU units.
    Cpu,
    /// Memory.
    Memory,
}

/// What spread balances over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpreadField {
    /// Each instance (`instanceId`, or its alias `host`).
    InstanceId,
    /// Each value of an attribute (`attribute:<name>`); instances without it form one more value.
    Attribute(String),
}

/// A placement strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlacementStrategy {
    /// Prefer the instance with the least of the resource left (that still fits the task).
    Binpack(BinpackField),
    /// Prefer the value (or instance) with the fewest tasks of the group.
    Spread(SpreadField),
    /// Any instance, chosen from the seeded RNG.
    Random,
}

/// A placement constraint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlacementConstraint {
    /// No two tasks of the group on one instance (counting tasks already there).
    DistinctInstance,
    /// Only instances for which the expression holds.
    MemberOf(Expr),
}

/// A strategy or constraint that ECS would refuse (InvalidParameterException).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The strategy type is not binpack, spread or random.
    #[error("invalid placement strategy type '{0}': must be one of binpack, spread, random")]
    UnknownStrategyType(String),
    /// binpack or spread without a field.
    #[error("placement strategy {0} requires a field")]
    MissingField(&'static str),
    /// binpack on something other than cpu or memory.
    #[error("invalid binpack field '{0}': must be cpu or memory")]
    InvalidBinpackField(String),
    /// spread on something other than instanceId, host or `attribute:<name>`.
    #[error("invalid spread field '{0}': must be instanceId, host or attribute:<name>")]
    InvalidSpreadField(String),
    /// The constraint type is not distinctInstance or memberOf.
    #[error("invalid placement constraint type '{0}': must be one of distinctInstance, memberOf")]
    UnknownConstraintType(String),
    /// distinctInstance with an expression.
    #[error("an expression cannot be specified with a distinctInstance constraint")]
    UnexpectedExpression,
    /// memberOf without an expression.
    #[error("an expression is required with a memberOf constraint")]
    MissingExpression,
    /// memberOf expression longer than ECS allows.
    #[error("placement constraint expression is {0} characters long, the limit is 2000")]
    ExpressionTooLong(usize),
    /// memberOf expression that does not parse.
    #[error("invalid memberOf expression: {0}")]
    Expression(#[from] ParseError),
}

impl PlacementStrategy {
    /// Builds a strategy from ECS's `{"type", "field"}`. Types are matched case-insensitively, as are
    /// `cpu`, `memory`, `instanceId` and `host`; attribute names are kept as written.
    pub fn from_wire(kind: &str, field: Option<&str>) -> Result<Self, WireError> {
        let field = field.map(str::trim).filter(|f| !f.is_empty());
        match kind.to_ascii_lowercase().as_str() {
            "binpack" => match field.map(str::to_ascii_lowercase).as_deref() {
                Some("cpu") => Ok(Self::Binpack(BinpackField::Cpu)),
                Some("memory") => Ok(Self::Binpack(BinpackField::Memory)),
                Some(_) => Err(WireError::InvalidBinpackField(
                    field.unwrap_or_default().to_owned(),
                )),
                None => Err(WireError::MissingField("binpack")),
            },
            "spread" => {
                let Some(f) = field else {
                    return Err(WireError::MissingField("spread"));
                };
                let lower = f.to_ascii_lowercase();
                if lower == "instanceid" || lower == "host" {
                    Ok(Self::Spread(SpreadField::InstanceId))
                } else if lower.starts_with("attribute:") && f.len() > "attribute:".len() {
                    Ok(Self::Spread(SpreadField::Attribute(
                        f["attribute:".len()..].to_owned(),
                    )))
                } else {
                    Err(WireError::InvalidSpreadField(f.to_owned()))
                }
            }
            "random" => Ok(Self::Random),
            _ => Err(WireError::UnknownStrategyType(kind.to_owned())),
        }
    }

    /// The wire `(type, field)` of this strategy.
    pub fn to_wire(&self) -> (&'static str, Option<String>) {
        match self {
            Self::Binpack(BinpackField::Cpu) => ("binpack", Some("cpu".into())),
            Self::Binpack(BinpackField::Memory) => ("binpack", Some("memory".into())),
            Self::Spread(SpreadField::InstanceId) => ("spread", Some("instanceId".into())),
            Self::Spread(SpreadField::Attribute(a)) => ("spread", Some(format!("attribute:{a}"))),
            Self::Random => ("random", None),
        }
    }

    /// Spread over availability zones.
    pub fn spread_availability_zone() -> Self {
        Self::Spread(SpreadField::Attribute(ATTR_AVAILABILITY_ZONE.to_owned()))
    }

    /// ECS's default for RunTask without strategies: random.
    pub fn run_task_defaults() -> Vec<Self> {
        vec![Self::Random]
    }

    /// ECS's default for a REPLICA service without strategies: spread over availability zones, then
    /// over instances.
    pub fn service_defaults() -> Vec<Self> {
        vec![
            Self::spread_availability_zone(),
            Self::Spread(SpreadField::InstanceId),
        ]
    }
}

impl PlacementConstraint {
    /// Builds a constraint from ECS's `{"type", "expression"}`.
    pub fn from_wire(kind: &str, expression: Option<&str>) -> Result<Self, WireError> {
        let expression = expression.filter(|e| !e.trim().is_empty());
        match kind.to_ascii_lowercase().as_str() {
            "distinctinstance" => match expression {
                Some(_) => Err(WireError::UnexpectedExpression),
                None => Ok(Self::DistinctInstance),
            },
            "memberof" => {
                let Some(e) = expression else {
                    return Err(WireError::MissingExpression);
                };
                if e.len() > MAX_EXPRESSION_LEN {
                    return Err(WireError::ExpressionTooLong(e.len()));
                }
                Ok(Self::MemberOf(query::parse(e)?))
            }
            _ => Err(WireError::UnknownConstraintType(kind.to_owned())),
        }
    }

    /// A memberOf constraint from an expression.
    pub fn member_of(expression: &str) -> Result<Self, WireError> {
        Self::from_wire("memberOf", Some(expression))
    }
}
