//! The planner against the local AWS endpoint (moto): scheduled meetings in DynamoDB, the
//! plan as scheduled actions on a real Auto Scaling group, read back through the AWS API.

use aula_domain::ports::ScheduleStore;
use aula_domain::services::ForecastPolicy;
use aula_domain::services::fleet::{FleetBounds, LOWER_ACTION, RAISE_ACTION};
use aula_domain::{ModeratorId, RoomId, ScheduleId, ScheduledMeeting, Span, Timestamp, retention};
use aula_planner::{AutoScalingFleet, PlannerConfig, plan_once};
use aula_store::{AwsConfig, AwsStore};
use std::time::Duration;
use uuid::Uuid;

/// Refuses anything but the local endpoint: these tests create groups and never talk to
/// real AWS.
async fn local_aws() -> (AwsStore, aws_sdk_autoscaling::Client) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.") || endpoint.starts_with("http://localhost"),
        "The planner tests need the local AWS endpoint: run `eval \"$(localstack/start.sh)\"` \
         first. AWS_ENDPOINT_URL is {endpoint:?}."
    );
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    // moto answers a query of an index by reading the whole table: with a morning of 2,000
    // meetings beside the other suites' items one page can take longer than production's
    // 10 s.
    let config = AwsConfig {
        call_timeout: Duration::from_secs(120),
        ..AwsConfig::from_env()
    };
    (
        AwsStore::new(&sdk, config),
        aws_sdk_autoscaling::Client::new(&sdk),
    )
}

/// A number no other run of these tests uses (names of groups, ids of meetings).
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos()
}

/// A fresh group of the stack's bounds (2 to 100 nodes).
async fn media_group(asg: &aws_sdk_autoscaling::Client, name: &str) {
    asg.create_launch_configuration()
        .launch_configuration_name(name)
        .image_id("ami-12c6146b")
        .instance_type("c7g.xlarge")
        .send()
        .await
        .expect("a launch configuration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(name)
        .min_size(0)
        .max_size(100)
        .availability_zones("eu-central-1a")
        .send()
        .await
        .expect("an Auto Scaling group");
}

fn config(group: &str) -> PlannerConfig {
    PlannerConfig {
        group: group.to_owned(),
        bounds: FleetBounds {
            min_nodes: 2,
            max_nodes: 100,
            school_day_nodes: 0,
        },
        policy: ForecastPolicy::default(),
    }
}

/// `rooms` meetings of `size` at `bell`, 90 minutes each, in the table.
async fn schedule(
    store: &AwsStore,
    seed: u128,
    rooms: u128,
    bell: Timestamp,
    size: u32,
) -> Vec<ScheduledMeeting> {
    let mut plans = Vec::new();
    for n in 0..rooms {
        let plan = ScheduledMeeting {
            id: ScheduleId::from_uuid(Uuid::from_u128(seed + n)),
            room_id: RoomId::from_uuid(Uuid::from_u128(seed + 1_000_000 + n)),
            owner: ModeratorId::from_uuid(Uuid::from_u128(seed + 2_000_000)),
            starts_at: bell,
            minutes: 90,
            expected_participants: size,
            created_at: bell.minus(Span::days(1)),
            expires_at: retention::schedule_expiry(bell.plus(Span::seconds(90 * 60))),
        };
        store
            .put_scheduled(&plan)
            .await
            .expect("the meeting is scheduled");
        plans.push(plan);
    }
    plans
}

/// The group's scheduled actions: (name, minimum, start) by name.
async fn actions(asg: &aws_sdk_autoscaling::Client, group: &str) -> Vec<(String, i32, i64)> {
    let out = asg
        .describe_scheduled_actions()
        .auto_scaling_group_name(group)
        .send()
        .await
        .expect("the group's scheduled actions");
    let mut list: Vec<_> = out
        .scheduled_update_group_actions()
        .iter()
        .map(|a| {
            (
                a.scheduled_action_name().unwrap_or_default().to_owned(),
                a.min_size().unwrap_or(-1),
                a.start_time().map(|t| t.secs()).unwrap_or(-1),
            )
        })
        .collect();
    list.sort();
    list
}

/// 8:00 in Berlin on a winter day (07:00 UTC) of 2040, one per run, so that the forecast
/// reads no other run's meetings.
fn winter_bell(seed: u128, year_offset_days: i64) -> Timestamp {
    // 2040-01-01 07:00 UTC, plus up to 49 days.
    let day = i64::try_from(seed % 50).expect("small");
    Timestamp::from_secs(2_209_014_000).plus(Span::days(year_offset_days + day))
}

#[tokio::test]
async fn scheduled_meetings_of_2000_rooms_of_16_for_tomorrow_at_8_raise_the_fleet_to_72_nodes_from_7_30_and_lower_it_after()
 {
    let (store, asg) = local_aws().await;
    let seed = unique();
    let group = format!("aula-media-nodes-{seed}");
    media_group(&asg, &group).await;
    let bell = winter_bell(seed, 0);
    let plans = schedule(&store, seed, 2000, bell, 16).await;
    let fleet = AutoScalingFleet::new(asg.clone(), group.clone());
    // The evening run (18:00 Berlin), and again: the same two actions, not four.
    let evening = bell.minus(Span::seconds(14 * 3600));
    for _ in 0..2 {
        let plan = plan_once(&store, &fleet, evening, &config(&group))
            .await
            .expect("the planner runs")
            .expect("a plan");
        assert_eq!(plan.nodes, 72);
    }
    let half_past_seven = bell.minus(Span::seconds(30 * 60)).epoch_secs();
    let exam_over = bell.plus(Span::seconds(90 * 60)).epoch_secs();
    assert_eq!(
        actions(&asg, &group).await,
        [
            (LOWER_ACTION.to_owned(), 2, exam_over),
            (RAISE_ACTION.to_owned(), 72, half_past_seven),
        ]
    );
    // The shared table keeps no exam morning for the next run to read through.
    for p in &plans {
        store.delete_scheduled(p).await.expect("called off");
    }
}

#[tokio::test]
async fn meetings_called_off_after_the_evening_run_are_no_longer_raised_for_in_the_morning() {
    let (store, asg) = local_aws().await;
    let seed = unique();
    let group = format!("aula-media-nodes-{seed}");
    media_group(&asg, &group).await;
    let bell = winter_bell(seed, 60);
    let plans = schedule(&store, seed, 100, bell, 16).await;
    let fleet = AutoScalingFleet::new(asg.clone(), group.clone());
    let evening = bell.minus(Span::seconds(14 * 3600));
    let raised = plan_once(&store, &fleet, evening, &config(&group))
        .await
        .expect("the planner runs")
        .expect("a plan");
    assert_eq!(raised.nodes, 5, "100 rooms of 16: 4 nodes and one spare");
    assert_eq!(actions(&asg, &group).await.len(), 2);
    for p in &plans {
        store.delete_scheduled(p).await.expect("called off");
    }
    let early = bell.minus(Span::seconds(2 * 3600));
    let again = plan_once(&store, &fleet, early, &config(&group))
        .await
        .expect("the planner runs");
    assert_eq!(again, None);
    assert_eq!(actions(&asg, &group).await, []);
}
