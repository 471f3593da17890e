//! The HTTP API over real sockets: the portal's router on a loopback port, once on the
//! embedded store and once on DynamoDB/S3 at the local endpoint. Test names say which
//! (`embedded::…`, `dynamodb::…`).

mod admins;
#[path = "../common/mod.rs"]
mod common;
mod harness;
mod journeys;
mod placement;
mod schedule;
mod security;
mod throttle;

macro_rules! on_both_stores {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = crate::harness::spawn(crate::harness::Backend::Embedded).await;
                    crate::$module::$case(&app).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = crate::harness::spawn(crate::harness::Backend::Dynamodb).await;
                    crate::$module::$case(&app).await;
                }
            )*
        }
    };
}

on_both_stores!(
    journeys::an_admin_provisions_a_teacher_who_logs_in_and_out,
    journeys::a_teacher_holds_a_lesson_and_a_guest_chats_without_a_lobby,
    journeys::with_the_lobby_on_a_guest_waits_until_admitted_and_a_denied_guest_stays_out,
    journeys::a_retried_chat_post_is_stored_once,
    journeys::private_messages_reach_only_the_two_parties,
    journeys::chat_history_pages_through_older_messages,
    journeys::a_teacher_exports_corrects_restricts_and_erases_their_data,
    journeys::admins_export_and_erase_rooms_and_every_action_is_audited,
    security::a_wrong_password_and_an_unknown_email_get_the_same_answer,
    throttle::an_attacker_with_the_teachers_email_cannot_keep_them_from_logging_in_on_their_device,
    throttle::an_attackers_own_attempts_wait_longer_and_longer,
    throttle::the_known_device_cookie_is_http_only_secure_strict_and_holds_no_email,
    throttle::two_hundred_teachers_behind_one_school_address_all_get_in_despite_typos,
    throttle::a_credential_stuffing_flood_from_one_address_is_stopped,
    admins::an_admin_cannot_restrict_or_erase_their_own_account_through_the_admin_endpoints,
    admins::an_admins_list_of_teachers_is_checked_line_by_line_and_only_good_lines_become_accounts,
    admins::a_handed_over_password_opens_nothing_but_the_password_change,
    admins::requests_arriving_during_a_password_change_in_the_same_browser_all_get_in,
    security::tampered_expired_wrong_audience_and_unsigned_tokens_are_refused,
    security::a_session_cookie_is_rotated_before_it_expires_and_dies_at_logout,
    security::every_request_is_access_logged_without_cookie_values,
    security::a_request_with_thousands_of_cookies_writes_a_small_log_entry,
    security::every_endpoint_allows_exactly_the_callers_it_should,
    security::malformed_query_strings_and_path_segments_are_refused_in_the_error_shape,
    journeys::the_portal_serves_an_openapi_document_of_every_endpoint,
    journeys::a_teacher_registers_where_the_deployment_allows_it,
    journeys::the_privacy_page_names_every_stored_record_its_retention_and_the_contacts,
    journeys::an_authority_disclosure_takes_an_access_log_range_open_at_one_end,
    schedule::a_teacher_schedules_a_meeting_of_thirty_and_the_admins_forecast_counts_it,
    schedule::a_plan_is_gone_the_day_after_it_was_to_end,
);

/// The last admin on the embedded store only: the shared DynamoDB table holds every other
/// test's admins (the refusal itself is the same service code on both stores).
mod last_admin {
    #[tokio::test]
    async fn the_only_admin_cannot_restrict_or_erase_themselves_but_a_second_admin_can() {
        let app = crate::harness::spawn(crate::harness::Backend::Embedded).await;
        crate::admins::the_only_admin_cannot_restrict_or_erase_themselves_but_a_second_admin_can(
            &app,
        )
        .await;
    }

    #[tokio::test]
    async fn two_admins_removing_each_other_at_once_always_leave_one_active() {
        let app = crate::harness::spawn(crate::harness::Backend::Embedded).await;
        crate::admins::two_admins_removing_each_other_at_once_always_leave_one_active(&app).await;
    }
}

/// Placement over the HTTP API on the embedded store only: on the shared DynamoDB table the
/// registry holds other tests' nodes, so "no node is live" cannot be arranged there (the
/// placement store itself passes the conformance suite on both).
mod placing {
    #[tokio::test]
    async fn a_room_whose_teacher_expects_thirty_gets_thirty_seats_when_the_teacher_enters() {
        let app = crate::harness::spawn_placing(crate::harness::Backend::Embedded).await;
        crate::placement::a_room_whose_teacher_expects_thirty_gets_thirty_seats_when_the_teacher_enters(&app).await;
    }

    #[tokio::test]
    async fn a_join_grant_names_a_live_node_or_says_when_to_retry() {
        let app = crate::harness::spawn_placing(crate::harness::Backend::Embedded).await;
        crate::placement::a_join_grant_names_a_live_node_or_says_when_to_retry(&app).await;
    }

    #[tokio::test]
    async fn a_client_that_lost_its_node_gets_another_once_that_node_has_gone_quiet() {
        let app = crate::harness::spawn_placing(crate::harness::Backend::Embedded).await;
        crate::placement::a_client_that_lost_its_node_gets_another_once_that_node_has_gone_quiet(
            &app,
        )
        .await;
    }
}

/// A flood past a low per-address limit, on both stores (the default limit of 300 would
/// send more requests at once than the local DynamoDB emulator answers in time).
mod flood {
    const LIMIT: u32 = 25;

    #[tokio::test]
    async fn embedded_a_parallel_flood_from_one_address_stops_exactly_at_the_limit() {
        let app =
            crate::harness::spawn_with_address_limit(crate::harness::Backend::Embedded, LIMIT)
                .await;
        crate::throttle::a_parallel_flood_from_one_address_stops_exactly_at_the_limit(
            &app,
            LIMIT as usize,
        )
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_parallel_flood_from_one_address_stops_exactly_at_the_limit() {
        let app =
            crate::harness::spawn_with_address_limit(crate::harness::Backend::Dynamodb, LIMIT)
                .await;
        crate::throttle::a_parallel_flood_from_one_address_stops_exactly_at_the_limit(
            &app,
            LIMIT as usize,
        )
        .await;
    }
}
