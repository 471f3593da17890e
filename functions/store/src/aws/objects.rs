//! Objects in S3, one bucket per [`ObjectClass`]; the expiry is object metadata that every
//! read checks.

use super::AwsStore;
use crate::{backend, corrupt};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use std::collections::HashMap;

const META_CREATED: &str = "created-at";
const META_EXPIRES: &str = "expires-at";

#[async_trait]
impl ObjectStore for AwsStore {
    async fn put_object(&self, o: &StoredObject) -> StoreResult<()> {
        self.s3
            .put_object()
            .bucket(self.bucket(o.class))
            .key(o.key.as_str())
            .content_type(&o.content_type)
            .metadata(META_CREATED, o.created_at.millis().to_string())
            .metadata(META_EXPIRES, o.expires_at.epoch_secs().to_string())
            .body(o.body.clone().into())
            .send()
            .await
            .map_err(backend("storing an object"))?;
        Ok(())
    }

    async fn get_object(
        &self,
        class: ObjectClass,
        key: &ObjectKey,
        now: Timestamp,
    ) -> StoreResult<Option<StoredObject>> {
        let out = match self
            .s3
            .get_object()
            .bucket(self.bucket(class))
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(backend("reading an object")(e)),
        };
        let meta = out.metadata.clone().unwrap_or_default();
        let Some((created_at, expires_at)) = object_times(&meta) else {
            return Err(corrupt("object")(
                "missing created-at or expires-at metadata",
            ));
        };
        if !expires_at.is_live_at(now) {
            return Ok(None);
        }
        let content_type = out.content_type.clone().unwrap_or_default();
        let body = out
            .body
            .collect()
            .await
            .map_err(backend("reading an object"))?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject {
            class,
            key: key.clone(),
            content_type,
            body,
            created_at,
            expires_at,
        }))
    }

    async fn list_objects(
        &self,
        class: ObjectClass,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ObjectKey>> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(self.bucket(class))
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(backend("listing objects"))?;
            for obj in page.contents.unwrap_or_default() {
                let Some(key) = obj.key.as_deref().and_then(|k| ObjectKey::parse(k).ok()) else {
                    continue;
                };
                // Listing carries no metadata: ask for the expiry of each candidate.
                let head = self
                    .s3
                    .head_object()
                    .bucket(self.bucket(class))
                    .key(key.as_str())
                    .send()
                    .await
                    .map_err(backend("listing objects"))?;
                let meta = head.metadata.unwrap_or_default();
                if object_times(&meta).is_some_and(|(_, e)| e.is_live_at(now)) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete_object(&self, class: ObjectClass, key: &ObjectKey) -> StoreResult<()> {
        self.s3
            .delete_object()
            .bucket(self.bucket(class))
            .key(key.as_str())
            .send()
            .await
            .map_err(backend("deleting an object"))?;
        Ok(())
    }
}

fn object_times(meta: &HashMap<String, String>) -> Option<(Timestamp, Expiry)> {
    let created = meta
        .get(META_CREATED)?
        .parse()
        .ok()
        .map(Timestamp::from_millis)?;
    let expires = meta
        .get(META_EXPIRES)?
        .parse()
        .ok()
        .map(Expiry::from_epoch_secs)?;
    Some((created, expires))
}
