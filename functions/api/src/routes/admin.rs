//! The privacy function, for admins: accounts (provision, export, restrict, erase), rooms
//! (export, erase), an authority's disclosure request and the audit log. Every action needs
//! a reason and is audited by the services.

use super::{R, attachment, parse_opt};
use crate::extract::{Body, Path, Query};
use crate::teacher_list;
use crate::types::*;
use crate::{ApiResult, ApiState};
use aula_domain::services::{self, AccountView, Caller, DisclosureRequest, Provisioned};
use aula_domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa_axum::routes;

pub fn router() -> R {
    R::new()
        .routes(routes!(admin_list, admin_provision))
        .routes(routes!(admin_import))
        .routes(routes!(admin_export_moderator))
        .routes(routes!(admin_restrict))
        .routes(routes!(admin_unrestrict))
        .routes(routes!(admin_erase_moderator))
        .routes(routes!(admin_export_room))
        .routes(routes!(admin_erase_room))
        .routes(routes!(admin_disclosure))
        .routes(routes!(admin_audit))
        .routes(routes!(admin_forecast))
}

#[utoipa::path(
    get,
    path = "/api/admin/moderators",
    tag = "privacy",
    summary = "All accounts (admins).",
    responses((status = 200, body = ModeratorsOut))
)]
async fn admin_list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ModeratorsOut>> {
    Ok(Json(ModeratorsOut {
        moderators: st.aula.list_moderators(&caller).await?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators",
    tag = "privacy",
    summary = "Creates an account (admins); audited.",
    request_body = ProvisionIn,
    responses((status = 201, body = ProvisionOut))
)]
async fn admin_provision(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<ProvisionIn>,
) -> ApiResult<Response> {
    let role = if input.admin {
        Role::Admin
    } else {
        Role::Moderator
    };
    let (m, password) = st
        .aula
        .provision_moderator(&caller, input.profile.parse()?, role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ProvisionOut {
            account: AccountView::from(&m),
            initial_password: password.expose().to_owned(),
        }),
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/import",
    tag = "privacy",
    summary = "Creates the teachers of a list (CSV) or checks it (dry run); each line answered on its own (admins); every account audited.",
    request_body = ImportIn,
    responses((status = 200, body = ImportOut))
)]
async fn admin_import(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<ImportIn>,
) -> ApiResult<Json<ImportOut>> {
    let list = teacher_list::parse(&input.csv)?;
    let mut lines: Vec<ImportLine> = Vec::with_capacity(list.len());
    let mut valid = Vec::new();
    for l in list {
        let (problem, detail) = match l.parsed {
            Ok(teacher) => {
                valid.push((lines.len(), teacher));
                (None, None)
            }
            Err((problem, detail)) => (Some(problem), Some(detail)),
        };
        lines.push(ImportLine {
            line: l.line,
            email: l.email,
            problem,
            detail,
            account: None,
            initial_password: None,
        });
    }
    let (at, teachers): (Vec<usize>, Vec<_>) = valid.into_iter().unzip();
    let outcomes = st
        .aula
        .provision_many(&caller, teachers, input.dry_run)
        .await?;
    for (i, outcome) in at.into_iter().zip(outcomes) {
        let line = &mut lines[i];
        match outcome {
            Provisioned::WouldCreate => {}
            Provisioned::Created(m, password) => {
                line.account = Some(AccountView::from(&*m));
                line.initial_password = Some(password.expose().to_owned());
            }
            Provisioned::EmailTaken => line.problem = Some(ImportProblem::EmailTaken),
            Provisioned::DuplicateInBatch => line.problem = Some(ImportProblem::DuplicateInFile),
        }
    }
    Ok(Json(ImportOut {
        dry_run: input.dry_run,
        valid: lines.iter().filter(|l| l.problem.is_none()).count(),
        lines,
    }))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/export",
    tag = "privacy",
    summary = "Exports an account's data (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = services::ModeratorExport))
)]
async fn admin_export_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Response> {
    let export = st
        .aula
        .admin_export_moderator(&caller, id, &AuditReason::parse(&input.reason)?)
        .await?;
    Ok(attachment("aula-moderator-export.json", &export))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/restrict",
    tag = "privacy",
    summary = "Blocks an account (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = AccountView))
)]
async fn admin_restrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, id, true, &reason)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/unrestrict",
    tag = "privacy",
    summary = "Lifts a block (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = AccountView))
)]
async fn admin_unrestrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, id, false, &reason)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/erase",
    tag = "privacy",
    summary = "Erases an account with everything it owns (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 204))
)]
async fn admin_erase_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula.admin_erase_moderator(&caller, id, &reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/rooms/{room}/export",
    tag = "privacy",
    summary = "Exports a room: chats, meetings, guests' nicknames (admins); audited.",
    request_body = ReasonIn,
    params(RoomPath),
    responses((status = 200, body = services::RoomExport))
)]
async fn admin_export_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Response> {
    let reason = AuditReason::parse(&input.reason)?;
    let export = st.aula.admin_export_room(&caller, room, &reason).await?;
    Ok(attachment("aula-room-export.json", &export))
}

#[utoipa::path(
    post,
    path = "/api/admin/rooms/{room}/erase",
    tag = "privacy",
    summary = "Erases a room with its chats, meetings and guests (admins); audited.",
    request_body = ReasonIn,
    params(RoomPath),
    responses((status = 204))
)]
async fn admin_erase_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula.admin_erase_room(&caller, room, &reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/disclosure",
    tag = "privacy",
    summary = "The export for an authority's legal request (admins); audited.",
    request_body = DisclosureIn,
    responses((status = 200, body = services::Disclosure))
)]
async fn admin_disclosure(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<DisclosureIn>,
) -> ApiResult<Response> {
    // One end alone is a range too (a contract a schema can state): up to now, or the
    // longest span the store returns before `until`.
    let access_log = match (input.access_log_from, input.access_log_until) {
        (None, None) => None,
        (from, until) => {
            let until = until.map_or_else(|| st.aula.clock.now(), Timestamp::from_millis);
            let from = from.map_or_else(
                || until.minus(aula_domain::ports::MAX_ACCESS_LOG_SPAN),
                Timestamp::from_millis,
            );
            Some((from, until))
        }
    };
    let req = DisclosureRequest {
        moderator: parse_opt(input.moderator, ModeratorId::parse)?,
        room: parse_opt(input.room, RoomId::parse)?,
        access_log,
        reason: AuditReason::parse(&input.reason)?,
    };
    let disclosure = st.aula.authority_disclosure(&caller, req).await?;
    Ok(attachment("aula-disclosure.json", &disclosure))
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "privacy",
    summary = "The audit log (admins). It cannot be changed or deleted.",
    params(SpanQuery),
    responses((status = 200, body = AuditOut))
)]
async fn admin_audit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SpanQuery>,
) -> ApiResult<Json<AuditOut>> {
    let entries = st
        .aula
        .audit_log(
            &caller,
            Timestamp::from_millis(q.from),
            Timestamp::from_millis(q.until),
        )
        .await?;
    Ok(Json(AuditOut { entries }))
}

#[utoipa::path(
    get,
    path = "/api/admin/forecast",
    tag = "privacy",
    summary = "The forecast from the teachers' scheduled meetings (admins): per slot, the meetings on, the participants expected, the seats placement reserves and the media nodes those need (plus a tenth spare). At most a day.",
    params(ForecastQuery),
    responses((status = 200, body = ForecastOut))
)]
async fn admin_forecast(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ForecastQuery>,
) -> ApiResult<Json<ForecastOut>> {
    let slot_minutes = q.slot.unwrap_or(30);
    let policy = st.config.forecast;
    let slots = st
        .aula
        .forecast(
            &caller,
            Timestamp::from_millis(q.from),
            Timestamp::from_millis(q.until),
            slot_minutes,
            policy,
        )
        .await?;
    Ok(Json(ForecastOut {
        slot_minutes,
        node_capacity: policy.node_capacity,
        slots,
    }))
}
