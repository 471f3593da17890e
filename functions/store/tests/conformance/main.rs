//! The storage conformance suite: the same cases, run against the embedded SQLite store
//! and against DynamoDB + S3 at the local AWS endpoint (`AWS_ENDPOINT_URL`). The test
//! names say which adapter ran: `embedded::…` and `dynamodb::…`.

mod accounts;
mod cases;
mod chat;
mod fixtures;
mod placement;

use accounts::*;
use cases::*;
use chat::*;
use placement::*;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, store) = crate::fixtures::embedded();
                    crate::$case(&store).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = crate::fixtures::dynamodb().await;
                    crate::$case(&store).await;
                }
            )*
        }
    };
}

conformance!(
    a_moderator_reads_back_by_id_and_by_email,
    one_email_holds_one_account_even_under_concurrent_writers,
    changing_an_email_frees_the_old_one_and_refuses_a_taken_one,
    an_erased_moderator_is_gone_and_the_email_is_free_again,
    a_room_is_there_six_months_minus_a_second_after_last_use_and_gone_a_second_after,
    using_a_room_keeps_it_alive,
    a_rooms_expected_participants_are_kept_changed_and_cleared,
    a_rotated_invite_link_no_longer_finds_the_room,
    rooms_are_listed_per_owner_oldest_first_without_expired_ones,
    updating_an_expired_room_is_refused,
    deleting_a_room_deletes_its_guests_meetings_and_chats,
    scheduled_meetings_list_by_room_owner_and_start_and_are_gone_the_day_after_they_end,
    deleting_a_room_deletes_its_scheduled_meetings,
    guests_are_kept_by_nickname_and_expire_after_six_months,
    meetings_are_listed_newest_first_and_expire,
    a_retried_post_is_stored_once,
    concurrent_retries_of_one_post_store_one_message,
    history_pages_go_newest_to_oldest_without_gaps_or_repeats,
    private_conversations_are_apart_from_the_room_chat,
    an_expired_message_is_never_served_and_its_key_may_be_used_again,
    a_deleted_message_is_gone_and_its_key_may_be_used_again,
    access_log_entries_list_by_time_and_expire_after_30_days,
    a_dead_media_node_leaves_the_registry_when_its_heartbeat_expires,
    objects_read_back_and_are_never_served_after_expiry,
    the_store_holds_no_field_the_inventory_does_not_declare,
    a_session_lives_until_it_expires_or_is_deleted,
    erasing_a_moderator_ends_their_sessions,
    a_password_change_ends_the_other_sessions_and_keeps_the_one_in_use,
    concurrent_attempts_are_all_counted_and_the_count_ends_with_its_window,
    parallel_attempts_counted_up_to_a_limit_stop_exactly_there_and_can_be_taken_back,
    admins_restricting_each_other_at_the_same_instant_always_leave_one_active,
    the_audit_log_lists_by_time_and_expires_after_a_year,
    a_room_keeps_its_placement_and_of_two_concurrent_placements_one_wins,
    concurrent_reservations_never_take_a_node_over_its_capacity,
    when_a_rooms_node_dies_many_concurrent_moves_end_on_one_node_and_every_loser_learns_it_from_its_own_write,
    seats_go_to_distinct_holders_grow_within_capacity_and_come_back_on_release,
    a_room_keeps_one_place_in_the_queue_places_are_numbered_once_and_the_mark_only_rises,
);

/// What only the DynamoDB adapter has: the table's TTL and the shape of the TTL attribute.
mod dynamodb_table {
    use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};

    async fn client() -> (aws_sdk_dynamodb::Client, String) {
        let _ = crate::fixtures::dynamodb().await; // the endpoint guard
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let table = aula_store::AwsConfig::from_env().table;
        (aws_sdk_dynamodb::Client::new(&sdk), table)
    }

    #[tokio::test]
    async fn the_table_deletes_expired_items_by_ttl_on_expires_at() {
        let (ddb, table) = client().await;
        let ttl = ddb
            .describe_time_to_live()
            .table_name(&table)
            .send()
            .await
            .expect("describe TTL")
            .time_to_live_description
            .expect("a TTL description");
        assert_eq!(ttl.attribute_name(), Some("expires_at"));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }

    #[tokio::test]
    async fn every_expiring_item_carries_expires_at_as_epoch_seconds() {
        let (ddb, table) = client().await;
        // Write at least one item of each expiring kind through the adapter first.
        let store = crate::fixtures::dynamodb().await;
        crate::cases::the_store_holds_no_field_the_inventory_does_not_declare(&store).await;
        let items = ddb
            .scan()
            .table_name(&table)
            .send()
            .await
            .expect("scan")
            .items
            .unwrap_or_default();
        let mut checked = 0;
        for item in &items {
            let Some(AttributeValue::S(kind)) = item.get("kind") else {
                panic!("an item without a kind: {item:?}")
            };
            let expiring = aula_domain::inventory::RecordKind::from_name(kind)
                .is_some_and(|k| k.declares("expires_at"));
            match (expiring, item.get("expires_at")) {
                (true, Some(AttributeValue::N(secs))) => {
                    let secs: i64 = secs.parse().expect("a whole number");
                    // Seconds, not milliseconds: before the year 2100 in seconds.
                    assert!(
                        (1_000_000_000..4_102_444_800).contains(&secs),
                        "{kind}: {secs}"
                    );
                    checked += 1;
                }
                (true, other) => panic!("{kind} without a numeric expires_at: {other:?}"),
                (false, None) => {}
                (false, Some(_)) => panic!("{kind} must not expire"),
            }
        }
        assert!(checked > 0);
    }
}
