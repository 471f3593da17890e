//! The whole-table scan tests hold the store to the data inventory with (feature
//! `test-support`; production code never scans the table).

use super::AwsStore;
use super::codec::Item;
use crate::{Introspect, StoredFields, backend};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeSet;

/// Attributes that only address an item; they repeat declared fields, never add data.
const KEY_ATTRIBUTES: [&str; 7] = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "kind"];

#[async_trait]
impl Introspect for AwsStore {
    /// Scans the whole table and lists, per `kind`, every attribute name seen (less the
    /// key attributes); S3 objects report their metadata names under `object`.
    async fn stored_fields(&self) -> StoreResult<StoredFields> {
        let mut out = StoredFields::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.cfg.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("scanning the table"))?;
            for i in page.items.unwrap_or_default() {
                let kind = match i.get("kind") {
                    Some(AttributeValue::S(k)) => k.clone(),
                    _ => "(no kind)".to_owned(),
                };
                let fields: BTreeSet<String> = i
                    .keys()
                    .filter(|k| !KEY_ATTRIBUTES.contains(&k.as_str()))
                    .cloned()
                    .collect();
                out.entry(kind).or_default().extend(fields);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        for class in [ObjectClass::Export, ObjectClass::LogArchive] {
            let listing = self
                .s3
                .list_objects_v2()
                .bucket(self.bucket(class))
                .send()
                .await
                .map_err(backend("listing objects"))?;
            for obj in listing.contents.unwrap_or_default() {
                let Some(key) = obj.key else { continue };
                let head = self
                    .s3
                    .head_object()
                    .bucket(self.bucket(class))
                    .key(&key)
                    .send()
                    .await
                    .map_err(backend("listing objects"))?;
                let fields = out.entry(RecordKind::Object.name().to_owned()).or_default();
                // The bucket is the class; key, body and content type are the object itself.
                fields.extend(["class", "key", "body", "content_type"].map(String::from));
                fields.extend(
                    head.metadata
                        .unwrap_or_default()
                        .into_keys()
                        .map(|k| k.replace('-', "_")),
                );
            }
        }
        Ok(out)
    }

    async fn contains_text(&self, needle: &str, skip: &[RecordKind]) -> StoreResult<bool> {
        let skipped = |item: &Item| matches!(item.get("kind"), Some(AttributeValue::S(k)) if skip.iter().any(|s| s.name() == k));
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.cfg.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("scanning the table"))?;
            for item in page.items.unwrap_or_default() {
                if !skipped(&item) && format!("{item:?}").contains(needle) {
                    return Ok(true);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        for class in [ObjectClass::Export, ObjectClass::LogArchive] {
            if class == ObjectClass::LogArchive && skip.contains(&RecordKind::AccessLog) {
                continue;
            }
            let mut pages = self
                .s3
                .list_objects_v2()
                .bucket(self.bucket(class))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(backend("listing objects"))?;
                for obj in page.contents.unwrap_or_default() {
                    let Some(key) = obj.key else { continue };
                    if key.contains(needle) {
                        return Ok(true);
                    }
                    let body = self
                        .s3
                        .get_object()
                        .bucket(self.bucket(class))
                        .key(&key)
                        .send()
                        .await
                        .map_err(backend("reading an object"))?
                        .body
                        .collect()
                        .await
                        .map_err(backend("reading an object"))?
                        .into_bytes();
                    if String::from_utf8_lossy(&body).contains(needle) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}
