//! The DynamoDB requests the aggregates build on: one item by key, paged queries of a
//! partition or an index partition, batch deletes, and transactions.

use super::AwsStore;
use super::codec::{Item, s};
use crate::backend;
use aula_domain::ports::*;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, DeleteRequest, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};

/// How a transaction ended.
pub(super) enum Transacted {
    Committed,
    /// Nothing was written; why, item by item in the transaction's order.
    Cancelled(Vec<CancellationReason>),
}

/// Whether the transaction's item at `index` was refused by its condition.
pub(super) fn condition_failed(reasons: &[CancellationReason], index: usize) -> bool {
    reasons
        .get(index)
        .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
}

impl AwsStore {
    pub(super) async fn get(
        &self,
        pk: String,
        sk: &str,
        doing: &'static str,
    ) -> StoreResult<Option<Item>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(out.item)
    }

    pub(super) async fn put(&self, item: Item, doing: &'static str) -> StoreResult<()> {
        self.ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(())
    }

    pub(super) async fn delete(
        &self,
        pk: String,
        sk: &str,
        doing: &'static str,
    ) -> StoreResult<()> {
        self.ddb
            .delete_item()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(())
    }

    /// Every item of one partition whose sort key lies in `[lo, hi]` (all pages), in order;
    /// the whole partition when `range` is `None`.
    pub(super) async fn query_range(
        &self,
        pk: String,
        range: Option<(String, String)>,
        forward: bool,
        doing: &'static str,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .expression_attribute_values(":pk", s(pk.clone()))
                .scan_index_forward(forward)
                .consistent_read(true)
                .set_exclusive_start_key(start);
            q = match &range {
                Some((lo, hi)) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let out = q.send().await.map_err(backend(doing))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Every item of one partition of a global secondary index (all pages), in sort order.
    pub(super) async fn query_index(
        &self,
        index: &str,
        pk: String,
        doing: &'static str,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", format!("{index}pk"))
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend(doing))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Deletes items by key, 25 per request, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn delete_all(&self, items: &[Item], doing: &'static str) -> StoreResult<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let key: Item = item
                        .iter()
                        .filter(|(k, _)| *k == "pk" || *k == "sk")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(backend(doing))
                })
                .collect::<StoreResult<_>>()?;
            for attempt in 0u32.. {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.cfg.table, requests)
                    .send()
                    .await
                    .map_err(backend(doing))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.cfg.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= 8 {
                    return Err(StoreError::Backend {
                        doing,
                        source: "DynamoDB left deletes unprocessed after 8 retries".into(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        doing: &'static str,
    ) -> StoreResult<bool> {
        Ok(matches!(
            self.transact_why(items, doing).await?,
            Transacted::Committed
        ))
    }

    /// A transaction, and when it is cancelled the reason for each item (with the item as
    /// it was for a conditional put that failed: see [`AwsStore::put_item_if`]).
    pub(super) async fn transact_why(
        &self,
        items: Vec<TransactWriteItem>,
        doing: &'static str,
    ) -> StoreResult<Transacted> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        match self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Transacted::Committed),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Ok(Transacted::Cancelled(c.cancellation_reasons().to_vec()))
                }
                _ => Err(backend(doing)(e)),
            },
        }
    }

    pub(super) fn put_item(
        &self,
        item: Item,
        condition: Option<&str>,
    ) -> StoreResult<TransactWriteItem> {
        self.put_item_if(item, condition.unwrap_or_default(), [])
    }

    /// A transactional put, conditional when `condition` is not empty.
    pub(super) fn put_item_if<const N: usize>(
        &self,
        item: Item,
        condition: &str,
        values: [(&str, AttributeValue); N],
    ) -> StoreResult<TransactWriteItem> {
        let values: Item = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let put = Put::builder()
            .table_name(&self.cfg.table)
            .set_item(Some(item))
            .set_condition_expression((!condition.is_empty()).then(|| condition.to_owned()))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            // A failed condition says what it found, so a caller that lost a race learns
            // the winner's item from its own write instead of reading it again.
            .set_return_values_on_condition_check_failure(
                (!condition.is_empty()).then_some(ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .build()
            .map_err(backend("building a transaction"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn delete_item(&self, pk: String, sk: &str) -> StoreResult<TransactWriteItem> {
        let del = Delete::builder()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .build()
            .map_err(backend("building a transaction"))?;
        Ok(TransactWriteItem::builder().delete(del).build())
    }
}
