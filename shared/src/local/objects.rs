//! Objects as files under a root directory; writes are atomic (temp file + rename).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::{ObjectMeta, ObjectStore, StoreError};

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsStore {
            root: root.canonicalize()?,
        })
    }

    /// Maps a key to a path, refusing anything that would leave the root.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError::backend(
                "resolve",
                key,
                "not a relative key inside the store",
            ));
        }
        Ok(self.root.join(rel))
    }

    fn write_atomically(
        &self,
        key: &str,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a key has a parent");
        std::fs::create_dir_all(dir).map_err(|e| StoreError::backend("put", key, e))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            std::process::id()
        ));
        write(&tmp).map_err(|e| StoreError::backend("put", key, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::backend("put", key, e))
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let p = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // temp files of writes in progress
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&p, root, out)?;
        } else if ft.is_file() {
            let key = p
                .strip_prefix(root)
                .expect("below root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(ObjectMeta {
                key,
                size: entry.metadata()?.len(),
                version: None,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path(key)?;
        match std::fs::File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(StoreError::backend("open", key, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: m.len(),
                version: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::backend("head", key, e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.write_atomically(key, |tmp| std::fs::write(tmp, &body))
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        // A copy: the caller's file may change later, the stored object must not.
        self.write_atomically(key, |tmp| std::fs::copy(path, tmp).map(|_| ()))
    }

    async fn put_owned_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        // The caller gives the file up (a spool file): a rename moves no bytes.
        self.write_atomically(key, |tmp| {
            std::fs::rename(path, tmp).or_else(|_| std::fs::copy(path, tmp).map(|_| ()))
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Walk from the deepest directory the prefix names, then filter by prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_part)?
        };
        let mut out = Vec::new();
        walk(&start, &self.root, &mut out).map_err(|e| StoreError::backend("list", prefix, e))?;
        out.retain(|m| m.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::backend("delete", key, e)),
        }
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_filesystem_store_behaves_like_an_object_store() {
        let dir = tempfile::tempdir().unwrap();
        crate::ports::conformance::check(&FsStore::new(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn put_open_list_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path()).unwrap();
        s.put("a/b/c.txt", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        s.put("a/d.txt", Bytes::from_static(b"x")).await.unwrap();
        let mut body = String::new();
        s.open("a/b/c.txt")
            .await
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "hello");
        let keys: Vec<_> = s
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["a/b/c.txt", "a/d.txt"]);
        assert_eq!(s.list("a/b").await.unwrap().len(), 1);
        assert_eq!(s.head("a/d.txt").await.unwrap().unwrap().size, 1);
        s.delete("a/d.txt").await.unwrap();
        assert!(s.head("a/d.txt").await.unwrap().is_none());
        assert!(matches!(
            s.open("nope").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path().join("root")).unwrap();
        assert!(s.put("../evil", Bytes::new()).await.is_err());
        assert!(s.put("/etc/evil", Bytes::new()).await.is_err());
    }
}
