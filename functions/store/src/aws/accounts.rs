//! Accounts: moderators (`MOD#<id>`), the claim that makes an email unique
//! (`EMAIL#<email>`), and sessions (`SESSION#<id>`, listed per moderator on gsi1).

use super::AwsStore;
use super::codec::{Fields, Item, b, is_live, item, n, s};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};

fn moderator_pk(id: ModeratorId) -> String {
    format!("MOD#{id}")
}
fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}

fn moderator_item(m: &Moderator) -> Item {
    item(
        RecordKind::Moderator,
        [
            ("pk", s(moderator_pk(m.id))),
            ("sk", s("PROFILE")),
            ("gsi1pk", s("MODERATORS")),
            ("gsi1sk", s(m.email.as_str())),
            ("id", s(m.id.to_string())),
            ("last_name", s(m.last_name.as_str())),
            ("first_name", s(m.first_name.as_str())),
            ("email", s(m.email.as_str())),
            ("federal_state", s(m.federal_state.code())),
            ("organisation", s(m.organisation.as_str())),
            ("role", s(m.role.as_str())),
            ("status", s(m.status.as_str())),
            ("password_hash", s(m.password_hash.as_str())),
            ("must_change_password", b(m.must_change_password)),
            ("created_at", n(m.created_at.millis())),
        ],
    )
}

fn moderator_from(i: &Item) -> StoreResult<Moderator> {
    let f = Fields::of(i, RecordKind::Moderator);
    Ok(Moderator {
        id: f.parse("id", ModeratorId::parse)?,
        last_name: f.parse("last_name", PersonName::parse)?,
        first_name: f.parse("first_name", PersonName::parse)?,
        email: f.parse("email", Email::parse)?,
        federal_state: f.parse("federal_state", FederalState::parse)?,
        organisation: f.parse("organisation", Organisation::parse)?,
        role: f.parse("role", Role::parse)?,
        status: f.parse("status", AccountStatus::parse)?,
        password_hash: f.parse("password_hash", PasswordHash::parse)?,
        // Accounts written before the flag existed have none: nothing to change.
        must_change_password: i.contains_key("must_change_password")
            && f.bool("must_change_password")?,
        created_at: f.ts("created_at")?,
    })
}

fn email_claim_item(email: &Email, id: ModeratorId) -> Item {
    item(
        RecordKind::ModeratorEmail,
        [
            ("pk", s(email_pk(email))),
            ("sk", s("EMAIL")),
            ("email", s(email.as_str())),
            ("moderator_id", s(id.to_string())),
        ],
    )
}

fn session_pk(id: SessionId) -> String {
    format!("SESSION#{id}")
}

fn session_item(x: &Session) -> Item {
    item(
        RecordKind::Session,
        [
            ("pk", s(session_pk(x.id))),
            ("sk", s("SESSION")),
            ("gsi1pk", s(format!("SESSIONS#{}", x.moderator_id))),
            ("gsi1sk", s(x.id.to_string())),
            ("id", s(x.id.to_string())),
            ("moderator_id", s(x.moderator_id.to_string())),
            ("role", s(x.role.as_str())),
            ("must_change_password", b(x.must_change_password)),
            ("created_at", n(x.created_at.millis())),
            ("expires_at", n(x.expires_at.epoch_secs())),
        ],
    )
}

fn session_from(i: &Item) -> StoreResult<Session> {
    let f = Fields::of(i, RecordKind::Session);
    Ok(Session {
        id: f.parse("id", SessionId::parse)?,
        moderator_id: f.parse("moderator_id", ModeratorId::parse)?,
        role: f.parse("role", Role::parse)?,
        // Sessions written before the flag existed have none: nothing to change.
        must_change_password: i.contains_key("must_change_password")
            && f.bool("must_change_password")?,
        created_at: f.ts("created_at")?,
        expires_at: f.expiry()?,
    })
}

const EMAIL_TAKEN: StoreError = StoreError::Conflict {
    what: "an account with this email",
};

#[async_trait]
impl ModeratorStore for AwsStore {
    #[tracing::instrument(skip_all, fields(moderator = %m.id))]
    async fn create_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let ok = self
            .transact(
                vec![
                    self.put_item(moderator_item(m), Some("attribute_not_exists(pk)"))?,
                    self.put_item(
                        email_claim_item(&m.email, m.id),
                        Some("attribute_not_exists(pk)"),
                    )?,
                ],
                "creating a moderator",
            )
            .await?;
        if ok { Ok(()) } else { Err(EMAIL_TAKEN) }
    }

    async fn moderator(&self, id: ModeratorId) -> StoreResult<Option<Moderator>> {
        self.get(moderator_pk(id), "PROFILE", "reading a moderator")
            .await?
            .as_ref()
            .map(moderator_from)
            .transpose()
    }

    async fn moderator_by_email(&self, email: &Email) -> StoreResult<Option<Moderator>> {
        let Some(claim) = self
            .get(email_pk(email), "EMAIL", "reading a moderator")
            .await?
        else {
            return Ok(None);
        };
        let id = Fields::of(&claim, RecordKind::ModeratorEmail)
            .parse("moderator_id", ModeratorId::parse)?;
        Ok(self.moderator(id).await?.filter(|m| &m.email == email))
    }

    #[tracing::instrument(skip_all, fields(moderator = %m.id))]
    async fn update_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let Some(current) = self.moderator(m.id).await? else {
            return Err(StoreError::NotFound {
                what: "the account",
            });
        };
        let mut writes = vec![self.put_item(moderator_item(m), Some("attribute_exists(pk)"))?];
        if current.email != m.email {
            writes.push(self.delete_item(email_pk(&current.email), "EMAIL")?);
            writes.push(self.put_item(
                email_claim_item(&m.email, m.id),
                Some("attribute_not_exists(pk)"),
            )?);
        }
        if self.transact(writes, "updating a moderator").await? {
            Ok(())
        } else if self.moderator(m.id).await?.is_none() {
            Err(StoreError::NotFound {
                what: "the account",
            })
        } else {
            Err(EMAIL_TAKEN)
        }
    }

    #[tracing::instrument(skip_all, fields(moderator = %id))]
    async fn delete_moderator(&self, id: ModeratorId) -> StoreResult<()> {
        self.delete_sessions_of(id).await?;
        let items = self
            .query_range(moderator_pk(id), None, true, "deleting a moderator")
            .await?;
        let current = items
            .iter()
            .find(|i| matches!(i.get("sk"), Some(AttributeValue::S(sk)) if sk == "PROFILE"))
            .map(moderator_from)
            .transpose()?;
        if let Some(m) = current {
            // The claim goes only while it still names this account.
            let claim = self
                .get(email_pk(&m.email), "EMAIL", "deleting a moderator")
                .await?;
            let ours = claim.as_ref().is_some_and(|c| {
                matches!(c.get("moderator_id"), Some(AttributeValue::S(v)) if *v == id.to_string())
            });
            if ours {
                self.delete(email_pk(&m.email), "EMAIL", "deleting a moderator")
                    .await?;
            }
        }
        self.delete_all(&items, "deleting a moderator").await
    }

    async fn list_moderators(&self) -> StoreResult<Vec<Moderator>> {
        let items = self
            .query_index("gsi1", "MODERATORS".into(), "listing moderators")
            .await?;
        items.iter().map(moderator_from).collect()
    }

    #[tracing::instrument(skip_all, fields(moderator = %id, keeper = %keeper))]
    async fn restrict_keeping_admin(
        &self,
        id: ModeratorId,
        keeper: ModeratorId,
    ) -> StoreResult<bool> {
        if id == keeper {
            return Ok(false);
        }
        const DOING: &str = "restricting an admin";
        let restrict = Update::builder()
            .table_name(&self.cfg.table)
            .key("pk", s(moderator_pk(id)))
            .key("sk", s("PROFILE"))
            .update_expression("SET #status = :restricted")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":restricted", s(AccountStatus::Restricted.as_str()))
            .build()
            .map_err(crate::backend(DOING))?;
        let keeper_active = ConditionCheck::builder()
            .table_name(&self.cfg.table)
            .key("pk", s(moderator_pk(keeper)))
            .key("sk", s("PROFILE"))
            .condition_expression("#role = :admin AND #status = :active")
            .expression_attribute_names("#role", "role")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":admin", s(Role::Admin.as_str()))
            .expression_attribute_values(":active", s(AccountStatus::Active.as_str()))
            .build()
            .map_err(crate::backend(DOING))?;
        // DynamoDB runs a transaction serializably: of two crossing restrictions, the one
        // that comes second sees the first one's write in its check (or both are cancelled
        // as conflicting, and nothing is written).
        let written = self
            .transact(
                vec![
                    TransactWriteItem::builder().update(restrict).build(),
                    TransactWriteItem::builder()
                        .condition_check(keeper_active)
                        .build(),
                ],
                DOING,
            )
            .await?;
        if written {
            Ok(true)
        } else if self.moderator(id).await?.is_none() {
            Err(StoreError::NotFound {
                what: "the account",
            })
        } else {
            // The keeper is no longer an active admin, or the transaction met a concurrent
            // one (DynamoDB cancels both sides of a conflict): the caller looks again.
            Ok(false)
        }
    }
}

#[async_trait]
impl SessionStore for AwsStore {
    async fn put_session(&self, x: &Session) -> StoreResult<()> {
        self.put(session_item(x), "saving a session").await
    }

    async fn session(
        &self,
        moderator: ModeratorId,
        id: SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Session>> {
        match self
            .get(session_pk(id), "SESSION", "reading a session")
            .await?
        {
            Some(i) if is_live(&i, now) => {
                Ok(Some(session_from(&i)?).filter(|x| x.moderator_id == moderator))
            }
            _ => Ok(None),
        }
    }

    async fn delete_session(&self, moderator: ModeratorId, id: SessionId) -> StoreResult<()> {
        if self
            .session(moderator, id, Timestamp::from_millis(0))
            .await?
            .is_some()
        {
            self.delete(session_pk(id), "SESSION", "deleting a session")
                .await?;
        }
        Ok(())
    }

    async fn delete_sessions_of(&self, moderator: ModeratorId) -> StoreResult<()> {
        let items = self
            .query_index("gsi1", format!("SESSIONS#{moderator}"), "deleting sessions")
            .await?;
        self.delete_all(&items, "deleting sessions").await
    }

    async fn delete_sessions_except(
        &self,
        moderator: ModeratorId,
        keep: SessionId,
    ) -> StoreResult<()> {
        const DOING: &str = "deleting the other sessions";
        let kept = s(session_pk(keep));
        let items: Vec<Item> = self
            .query_index("gsi1", format!("SESSIONS#{moderator}"), DOING)
            .await?
            .into_iter()
            .filter(|i| i.get("pk") != Some(&kept))
            .collect();
        self.delete_all(&items, DOING).await
    }
}
