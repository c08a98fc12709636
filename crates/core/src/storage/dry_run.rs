//! A wrapper that reads through and drops every change, for `--dry-run`.

use std::sync::Arc;

use super::{Capabilities, ObjectInfo, ObjectKind, StagedObject, Storage, StorageResult};

#[derive(Debug)]
pub struct DryRunStorage {
    inner: Arc<dyn Storage>,
}

impl DryRunStorage {
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        DryRunStorage { inner }
    }
}

impl Storage for DryRunStorage {
    fn location(&self) -> String {
        format!("{} (dry run)", self.inner.location())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn exists(&self) -> StorageResult<bool> {
        self.inner.exists()
    }
    fn create(&self) -> StorageResult<()> {
        Ok(())
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        self.inner.read_range(kind, name, offset, length)
    }
    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.inner.read_range_into(kind, name, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.inner
            .read_metadata_range_into(kind, name, offset, length, buf)
    }
    fn write(&self, _kind: ObjectKind, _name: &str, _data: &[u8]) -> StorageResult<()> {
        Ok(())
    }
    fn stage(&self, _kind: ObjectKind) -> StorageResult<StagedObject> {
        Ok(StagedObject::discarding())
    }
    fn write_staged(&self, _kind: ObjectKind, _name: &str, _: StagedObject) -> StorageResult<()> {
        Ok(())
    }
    fn delete(&self, _kind: ObjectKind, _name: &str) -> StorageResult<()> {
        Ok(())
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        self.inner.stat(kind, name)
    }
}
