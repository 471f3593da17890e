//! Attempt counters (`RATE#<key>`, one item per window), counted with an atomic `ADD`.

use super::AwsStore;
use super::codec::{Fields, is_live, n, padded, s};
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;

fn rate_pk(key: &RateKey) -> String {
    format!("RATE#{}", key.as_str())
}

#[async_trait]
impl RateLimitStore for AwsStore {
    async fn hit(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        expires_at: Expiry,
    ) -> StoreResult<u32> {
        // ADD is atomic, so concurrent attempts are all counted.
        let out = self
            .ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(rate_pk(key)))
            .key("sk", s(padded(window_start)))
            .update_expression("ADD #count :one SET #kind = :kind, #key = :key, window_start = :ws, expires_at = :exp")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":kind", s(RecordKind::RateCounter.name()))
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":ws", n(window_start.millis()))
            .expression_attribute_values(":exp", n(expires_at.epoch_secs()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(backend("counting an attempt"))?;
        let attrs = out.attributes.unwrap_or_default();
        Fields::of(&attrs, RecordKind::RateCounter).num("count")
    }

    async fn attempts(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        match self
            .get(rate_pk(key), &padded(window_start), "reading attempts")
            .await?
        {
            Some(i) if is_live(&i, now) => Fields::of(&i, RecordKind::RateCounter).num("count"),
            _ => Ok(0),
        }
    }

    async fn clear(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()> {
        self.delete(rate_pk(key), &padded(window_start), "clearing attempts")
            .await
    }

    async fn hit_below(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        limit: u32,
        expires_at: Expiry,
    ) -> StoreResult<Option<u32>> {
        if limit == 0 {
            return Ok(None);
        }
        // The condition is checked and the ADD applied in one step: parallel callers queue
        // on the item, and the one that would pass the limit is refused.
        let out = self
            .ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(rate_pk(key)))
            .key("sk", s(padded(window_start)))
            .update_expression("ADD #count :one SET #kind = :kind, #key = :key, window_start = :ws, expires_at = :exp")
            .condition_expression("attribute_not_exists(#count) OR #count < :limit")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":kind", s(RecordKind::RateCounter.name()))
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":ws", n(window_start.millis()))
            .expression_attribute_values(":exp", n(expires_at.epoch_secs()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                Fields::of(&attrs, RecordKind::RateCounter)
                    .num("count")
                    .map(Some)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(backend("counting an attempt")(e)),
        }
    }

    async fn unhit(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(rate_pk(key)))
            .key("sk", s(padded(window_start)))
            .update_expression("ADD #count :minus_one")
            .condition_expression("#count > :zero")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Missing or already at zero: nothing to take back.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend("taking back an attempt")(e)),
        }
    }
}
