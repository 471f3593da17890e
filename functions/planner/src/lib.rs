//! The fleet planner's AWS side: its configuration (read once at start), the Auto Scaling
//! adapter of the domain's [`FleetScaler`] port, and the Lambda handler around
//! [`plan_fleet`]. The planning itself is in `aula_domain::services::fleet`.

use anyhow::{Context, Result};
use async_trait::async_trait;
use aula_domain::ports::{FleetError, FleetScaler};
use aula_domain::services::ForecastPolicy;
use aula_domain::services::fleet::{FleetBounds, FleetPlan, plan_fleet};
use aula_domain::{Clock, Timestamp};
use aula_store::{AwsConfig, AwsStore, SystemClock};
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::primitives::DateTime;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

/// What the planner is told by its environment (template.yaml).
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// The media fleet's Auto Scaling group (`AULA_FLEET_GROUP`).
    pub group: String,
    /// Its configured `MinNodes`/`MaxNodes` (`AULA_FLEET_MIN_NODES`, `AULA_FLEET_MAX_NODES`)
    /// and `ExamMorningMinNodes` (`AULA_FLEET_SCHOOL_DAY_NODES`).
    pub bounds: FleetBounds,
    /// `NodeCapacity` of the fleet (`AULA_NODE_CAPACITY`).
    pub policy: ForecastPolicy,
}

impl PlannerConfig {
    /// Fails fast on a missing or unreadable setting: a planner that guessed the group's
    /// bounds could scale it past them.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
        let number = |k: &str| -> Result<u32> {
            var(k)?
                .trim()
                .parse()
                .with_context(|| format!("{k} is not a whole number"))
        };
        let bounds = FleetBounds {
            min_nodes: number("AULA_FLEET_MIN_NODES")?,
            max_nodes: number("AULA_FLEET_MAX_NODES")?,
            school_day_nodes: number("AULA_FLEET_SCHOOL_DAY_NODES")?,
        };
        anyhow::ensure!(
            bounds.min_nodes <= bounds.max_nodes,
            "AULA_FLEET_MIN_NODES is above AULA_FLEET_MAX_NODES"
        );
        Ok(PlannerConfig {
            group: var("AULA_FLEET_GROUP")?,
            bounds,
            policy: ForecastPolicy {
                node_capacity: number("AULA_NODE_CAPACITY")?,
                ..ForecastPolicy::default()
            },
        })
    }
}

/// The fleet's floor as one-time scheduled actions on its Auto Scaling group.
pub struct AutoScalingFleet {
    client: aws_sdk_autoscaling::Client,
    group: String,
}

impl AutoScalingFleet {
    pub fn new(client: aws_sdk_autoscaling::Client, group: String) -> Self {
        AutoScalingFleet { client, group }
    }
}

fn failed(
    doing: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> FleetError {
    move |source| FleetError { doing, source }
}

#[async_trait]
impl FleetScaler for AutoScalingFleet {
    async fn put_floor(
        &self,
        action: &str,
        at: Timestamp,
        min_nodes: u32,
    ) -> Result<(), FleetError> {
        let min = i32::try_from(min_nodes).map_err(|e| failed("sizing the floor")(e.into()))?;
        // Only the minimum: the group's desired capacity follows it up at once, and a
        // desired capacity set here would scale a group that target tracking has already
        // grown back down to the plan.
        self.client
            .put_scheduled_update_group_action()
            .auto_scaling_group_name(&self.group)
            .scheduled_action_name(action)
            .start_time(DateTime::from_millis(at.millis()))
            .min_size(min)
            .send()
            .await
            .map_err(|e| failed("putting a scheduled action")(e.into()))?;
        Ok(())
    }

    async fn remove(&self, action: &str) -> Result<(), FleetError> {
        let deleted = self
            .client
            .delete_scheduled_action()
            .auto_scaling_group_name(&self.group)
            .scheduled_action_name(action)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // A missing action is a ValidationError "Scheduled action name not found"
            // (Auto Scaling has no code of its own for it). Asking first instead would need
            // DescribeScheduledActions, which IAM grants only on every group ("*").
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.code() == Some("ValidationError")
                        && s.message().is_some_and(|m| m.contains("not found"))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(failed("deleting a scheduled action")(e.into())),
        }
    }
}

/// One run: the plan for the coming hours put on the group.
pub async fn plan_once(
    store: &AwsStore,
    fleet: &AutoScalingFleet,
    now: Timestamp,
    config: &PlannerConfig,
) -> Result<Option<FleetPlan>> {
    plan_fleet(store, fleet, now, config.bounds, config.policy)
        .await
        .context("planning the fleet")
}

/// The Lambda: tracing, config, clients once; then one plan per scheduled event.
pub async fn run() -> Result<(), lambda_http::Error> {
    aula_lambda_log::init();
    let config = PlannerConfig::from_env()?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let store = AwsStore::new(&sdk, AwsConfig::from_env());
    let fleet = AutoScalingFleet::new(aws_sdk_autoscaling::Client::new(&sdk), config.group.clone());
    let (store, fleet, config) = (&store, &fleet, &config);
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let plan = plan_once(store, fleet, SystemClock.now(), config).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "nodes": plan.map(|p| p.nodes),
                "raise_at": plan.map(|p| p.raise_at.to_rfc3339()),
                "lower_at": plan.map(|p| p.lower_at.to_rfc3339()),
            }))
        },
    ))
    .await
}
