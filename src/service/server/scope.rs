//! Who sees what: allowed users share the daemon but not each other's
//! business. A requester other than the daemon's own uid sees in `Stats` only
//! the images it used and only its own processes, and evicts only images no
//! one else used. The counters (spawns, cache hits) stay daemon-wide.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use zygote_core::image::ImageKey;

/// What one request may see and change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// The daemon's own uid: everything.
    All,
    /// Another allowed user: its own images and processes.
    User(u32),
}

impl Scope {
    pub(super) fn of(peer_uid: u32, own_uid: u32) -> Self {
        if peer_uid == own_uid { Scope::All } else { Scope::User(peer_uid) }
    }

    /// May this scope see a process requested by `uid`?
    pub(super) fn sees_process(self, uid: u32) -> bool {
        matches!(self, Scope::All) || self == Scope::User(uid)
    }
}

/// Image key -> the uids that spawned or preloaded it, each with the path it
/// named (a static image is shared by content: another user's copy may have
/// built it, and its path is not this user's business).
#[derive(Debug, Default)]
pub(super) struct ImageUsers {
    map: Mutex<HashMap<ImageKey, BTreeMap<u32, PathBuf>>>,
}

impl ImageUsers {
    fn lock(&self) -> MutexGuard<'_, HashMap<ImageKey, BTreeMap<u32, PathBuf>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `uid` used the image `key`, naming `path`.
    pub(super) fn record(&self, key: ImageKey, uid: u32, path: &Path) {
        let mut map = self.lock();
        let users = map.entry(key).or_default();
        // Every spawn records: allocate only when the path is new.
        if users.get(&uid).is_none_or(|p| p != path) {
            users.insert(uid, path.to_path_buf());
        }
    }

    /// The path `uid` last named for the image `key`.
    pub(super) fn path_of(&self, key: &ImageKey, uid: u32) -> Option<PathBuf> {
        self.lock().get(key)?.get(&uid).cloned()
    }

    /// May `scope` see the image `key`?
    pub(super) fn sees(&self, scope: Scope, key: &ImageKey) -> bool {
        match scope {
            Scope::All => true,
            Scope::User(uid) => self.lock().get(key).is_some_and(|users| users.contains_key(&uid)),
        }
    }

    /// May `scope` evict the image `key`: every user of it is in the scope?
    pub(super) fn may_evict(&self, scope: Scope, key: &ImageKey) -> bool {
        match scope {
            Scope::All => true,
            Scope::User(uid) => self.lock().get(key).is_some_and(|users| users.keys().all(|u| *u == uid)),
        }
    }

    /// Forget the images for which `keep` is false (no longer cached or live).
    pub(super) fn retain(&self, keep: impl Fn(&ImageKey) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zygote_core::image::ContentHash;

    #[test]
    fn users_see_and_evict_only_their_own() {
        let (a, b) = (ImageKey::relocate(ContentHash([1; 32])), ImageKey::relocate(ContentHash([2; 32])));
        let users = ImageUsers::default();
        users.record(a, 1000, Path::new("/home/alice/a"));
        users.record(b, 1000, Path::new("/home/alice/b"));
        users.record(b, 1001, Path::new("/home/bob/b"));
        assert_eq!(users.path_of(&b, 1001), Some("/home/bob/b".into()));
        assert_eq!(users.path_of(&a, 1001), None);
        let (alice, bob) = (Scope::of(1000, 0), Scope::of(1001, 0));
        assert_eq!(Scope::of(0, 0), Scope::All);
        assert!(users.sees(alice, &a) && users.sees(alice, &b));
        assert!(!users.sees(bob, &a) && users.sees(bob, &b));
        assert!(users.may_evict(alice, &a), "only alice used a");
        assert!(!users.may_evict(alice, &b) && !users.may_evict(bob, &b), "b is shared");
        assert!(users.may_evict(Scope::All, &b));
        assert!(bob.sees_process(1001) && !bob.sees_process(1000) && Scope::All.sees_process(7));
        users.retain(|k| *k == b);
        assert!(!users.sees(alice, &a), "forgotten once gone");
    }
}
