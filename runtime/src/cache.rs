//! The compile cache on disk: PTX of compiled variants kept between processes, so that a
//! second compilation of the same variant (another `tlc compile`, the next start of a serving
//! process) skips the code generator.
//!
//! An entry is named by a [`CacheKey`]: the code generator's identity (its version and a
//! digest of the sources it was built from, `CodeGenerator::identity`), the architecture and
//! the whole text of the variant's thread-level program. That program is what the source, the
//! kernel's name, its compile-time parameters, the specialization assumptions and the
//! compiler's version make, so every one of them is in the key, and a change in any of them
//! that reaches the program gives another entry; a change that does not reach it gives the
//! same PTX, which the entry holds.
//!
//! Where: `$TL_CACHE_DIR` when set (`off` turns the cache off), else the platform's cache
//! directory (`$XDG_CACHE_HOME/tl` or `~/.cache/tl` on Linux, `~/Library/Caches/tl` on macOS,
//! `%LOCALAPPDATA%\tl\cache` on Windows); [`DiskCache::at`] in the API.
//!
//! Guarantees, for every failure of the disk:
//! * a corrupt or truncated entry (its length and checksum are checked, and its key compared
//!   in full) is never served: the variant is compiled again and the entry rewritten, with one
//!   warning per cache;
//! * several processes writing at once never leave a partial entry: each writes a file of its
//!   own beside the entry and renames it over the entry (atomic on one file system), so a
//!   reader sees a whole old entry, a whole new one or none;
//! * a cache that cannot be written (a read-only or full disk, a path that is not a
//!   directory) costs only the caching: compiled code stays in memory, with one warning.
//!
//! Size: when the entries pass the cache's limit (`TL_CACHE_MAX_MB`, 512 MiB by default), the
//! least recently used are removed until they hold three quarters of it (a hit refreshes an
//! entry's time), so builds of other compiler versions do not pile up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// The first bytes of every entry, with the format's version.
const MAGIC: &[u8; 8] = b"TLCACHE1";

/// The default limit on the bytes of a cache's entries.
const DEFAULT_LIMIT: u64 = 512 << 20;

/// What an entry is named by: a text holding everything the cached artifact depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    text: String,
}

impl CacheKey {
    /// The key of the PTX a code generator (`identity`) makes of `program` for `arch`.
    pub fn ptx(identity: &str, arch: crate::Arch, program: &tl_compiler::lir::Program) -> CacheKey {
        CacheKey { text: format!("ptx\n{identity}\n{}\n{program}", arch.name()) }
    }

    /// The key of the cubin a PTX compiler (`compiler`: the CUDA driver's JIT with its
    /// version, or a `ptxas` with its own) makes of `ptx` for `target` (the machine it runs on,
    /// e.g. `sm_90`).
    pub fn cubin(compiler: &str, target: &str, ptx: &str) -> CacheKey {
        CacheKey { text: format!("cubin\n{compiler}\n{target}\n{ptx}") }
    }

    /// The key of the machine code the `cpu` backend (`tl_cpu::identity`) compiled of a
    /// function whose Cranelift key (a digest of the function and the ISA with its flags) is
    /// `cranelift_key`.
    pub fn native_code(cranelift_key: &[u8]) -> CacheKey {
        let hex: String = cranelift_key.iter().map(|b| format!("{b:02x}")).collect();
        CacheKey { text: format!("native code\n{}\n{hex}", tl_cpu::identity()) }
    }

    /// The entry's file name: a digest of the key (the key itself is stored in the entry and
    /// compared, so two keys with one digest never share an entry).
    fn file_name(&self) -> String {
        format!("{:016x}.entry", fnv1a(self.text.as_bytes()))
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (an entry's checksum must read the same
/// in the next process, whatever compiled it).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A compile cache in a directory (or none: every lookup misses, nothing is written).
#[derive(Debug)]
pub struct DiskCache {
    directory: Option<PathBuf>,
    /// The most bytes the entries may hold (see the module's header).
    limit: u64,
    /// Set when writing failed once: the rest of the process keeps compiled code in memory
    /// only (and warns no more).
    unwritable: AtomicBool,
    hits: AtomicUsize,
    /// The warnings given, each with its kind: one warning of each kind per cache.
    warnings: Mutex<Vec<(&'static str, String)>>,
}

/// Distinguishes the temporary files of one process's writers.
static WRITER: AtomicU64 = AtomicU64::new(0);

impl DiskCache {
    /// A cache in `directory` (created when first written).
    pub fn at(directory: impl Into<PathBuf>) -> DiskCache {
        DiskCache::new(Some(directory.into()))
    }

    /// No cache.
    pub fn disabled() -> DiskCache {
        DiskCache::new(None)
    }

    /// The cache with its entries limited to `bytes` (the least recently used go first).
    pub fn with_limit(mut self, bytes: u64) -> DiskCache {
        self.limit = bytes;
        self
    }

    fn new(directory: Option<PathBuf>) -> DiskCache {
        DiskCache { directory, limit: DEFAULT_LIMIT, unwritable: AtomicBool::new(false), hits: AtomicUsize::new(0), warnings: Mutex::new(Vec::new()) }
    }

    /// The cache the environment names (`TL_CACHE_DIR`, else the platform's cache directory;
    /// none when `TL_CACHE_DIR=off` or no home directory is known), one per process: modules
    /// share it, and its warnings are given once.
    pub fn from_environment() -> Arc<DiskCache> {
        static SHARED: OnceLock<Arc<DiskCache>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let megabytes = std::env::var("TL_CACHE_MAX_MB").ok().and_then(|v| v.trim().parse::<u64>().ok());
                Arc::new(DiskCache::new(default_directory()).with_limit(megabytes.map_or(DEFAULT_LIMIT, |m| m.saturating_mul(1 << 20))))
            })
            .clone()
    }

    /// The directory, if the cache has one.
    pub fn directory(&self) -> Option<&Path> {
        self.directory.as_deref()
    }

    /// How many lookups this cache has answered from disk.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// The warnings given so far (each also written to standard error once).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.iter().map(|(_, message)| message.clone()).collect()).unwrap_or_default()
    }

    /// The entry for `key`, when there is a whole one. A corrupt or truncated entry is removed
    /// (the caller compiles again and `put`s the result).
    pub fn get(&self, key: &CacheKey) -> Option<Vec<u8>> {
        let path = self.directory.as_ref()?.join(key.file_name());
        let bytes = std::fs::read(&path).ok()?;
        match decode(&bytes, key) {
            Ok(payload) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                // Recently used: the last to go when the cache is trimmed (best effort).
                let _ = std::fs::File::options().append(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(payload.to_vec())
            }
            Err(Mismatch::OtherKey) => None,
            Err(Mismatch::Damaged(why)) => {
                self.warn_once("damaged", || format!("compile cache entry {} is damaged ({why}): compiling again", path.display()));
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Removes the entry for `key`, whole but unusable (`why`: e.g. the driver refused the
    /// cubin it holds), with one warning per cache; the caller makes the artifact again.
    pub fn discard(&self, key: &CacheKey, why: &str) {
        let Some(directory) = &self.directory else { return };
        let path = directory.join(key.file_name());
        self.warn_once("refused", || format!("compile cache entry {} cannot be used ({why}): compiling again", path.display()));
        let _ = std::fs::remove_file(&path);
    }

    /// Keeps `payload` under `key`: written beside the entry, then renamed over it. A failure
    /// is a warning (once), never an error: the caller has the payload in memory.
    pub fn put(&self, key: &CacheKey, payload: &[u8]) {
        let Some(directory) = &self.directory else { return };
        if self.unwritable.load(Ordering::Relaxed) {
            return;
        }
        let written = std::fs::create_dir_all(directory).and_then(|()| write_atomically(&directory.join(key.file_name()), &encode(key, payload)));
        match written {
            Ok(()) => self.trim(directory),
            Err(e) => {
                self.unwritable.store(true, Ordering::Relaxed);
                self.warn_once("unwritable", || format!("cannot write the compile cache in {} ({e}): compiled code is kept in memory only", directory.display()));
            }
        }
    }

    /// Removes the least recently used entries while they hold more than three quarters of
    /// the limit, once they pass it.
    fn trim(&self, directory: &Path) {
        let Ok(listing) = std::fs::read_dir(directory) else { return };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".entry"))
            .filter_map(|e| {
                let metadata = e.metadata().ok()?;
                Some((metadata.modified().ok()?, metadata.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.limit {
            return;
        }
        entries.sort();
        for (_, length, path) in entries {
            if total <= self.limit / 4 * 3 {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= length;
            }
        }
    }

    /// Writes a warning to standard error and keeps it, unless one of its `kind` was given
    /// already (a damaged cache is one message, not one per entry).
    pub(crate) fn warn_once(&self, kind: &'static str, message: impl FnOnce() -> String) {
        let Ok(mut warnings) = self.warnings.lock() else { return };
        if warnings.iter().any(|(given, _)| *given == kind) {
            return;
        }
        let message = message();
        eprintln!("tl: warning: {message}");
        warnings.push((kind, message));
    }
}

/// Writes `bytes` to `path` whole or not at all: into a file of this writer's own beside it
/// (`.NAME.PROCESS.N.tmp`), then renamed over it (atomic on one file system), so that readers
/// see the old file, the new one or none, and writers in several processes and threads never
/// mix their bytes. The temporary file is removed when writing fails.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{file_name}.{}.{}.tmp", std::process::id(), WRITER.fetch_add(1, Ordering::Relaxed)));
    let written = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The `cpu` backend keeps its machine code here (`tl_cpu::compile_with_cache`).
impl tl_cpu::CodeCache for DiskCache {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        DiskCache::get(self, &CacheKey::native_code(key))
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        DiskCache::put(self, &CacheKey::native_code(key), value);
    }
}

/// The platform's cache directory for tl, or what `TL_CACHE_DIR` says.
pub(crate) fn default_directory() -> Option<PathBuf> {
    let variable = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(directory) = variable("TL_CACHE_DIR") {
        return (directory.as_os_str() != "off").then_some(directory);
    }
    if cfg!(target_os = "windows") {
        return variable("LOCALAPPDATA").map(|d| d.join("tl").join("cache"));
    }
    if cfg!(target_os = "macos") {
        return variable("HOME").map(|d| d.join("Library/Caches/tl"));
    }
    variable("XDG_CACHE_HOME").map(|d| d.join("tl")).or_else(|| variable("HOME").map(|d| d.join(".cache/tl")))
}

/// MAGIC, the key's length (u64 LE) and text, the payload's length and its checksum (u64 LE,
/// FNV-1a of key and payload), the payload.
fn encode(key: &CacheKey, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32 + key.text.len() + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(key.text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key.text.as_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&checksum(key, payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn checksum(key: &CacheKey, payload: &[u8]) -> u64 {
    fnv1a(key.text.as_bytes()) ^ fnv1a(payload).rotate_left(1)
}

enum Mismatch {
    /// A whole entry of another key with the same digest: not ours, left alone.
    OtherKey,
    Damaged(&'static str),
}

/// The payload of an entry for `key`.
fn decode<'b>(bytes: &'b [u8], key: &CacheKey) -> Result<&'b [u8], Mismatch> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(Mismatch::Damaged("not an entry of this format"))?;
    let mut take = |n: usize| -> Result<&'b [u8], Mismatch> {
        if rest.len() < n {
            return Err(Mismatch::Damaged("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let length = |b: &[u8]| usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).unwrap_or(usize::MAX);
    let key_length = length(take(8)?);
    let key_text = take(key_length)?;
    let payload_length = length(take(8)?);
    let stored_checksum = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
    let payload = take(payload_length)?;
    if !rest.is_empty() {
        return Err(Mismatch::Damaged("longer than its header says"));
    }
    let stored_key = CacheKey { text: String::from_utf8_lossy(key_text).into_owned() };
    if checksum(&stored_key, payload) != stored_checksum {
        return Err(Mismatch::Damaged("checksum mismatch"));
    }
    if stored_key != *key {
        return Err(Mismatch::OtherKey);
    }
    Ok(payload)
}

/// A directory for one test of this crate (`name` unique among them), empty: under the
/// system's temporary directory, named with the process.
#[cfg(test)]
pub(crate) fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("tl_runtime_test_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    directory
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> CacheKey {
        CacheKey { text: format!("test\n{name}") }
    }

    fn scratch_directory(name: &str) -> PathBuf {
        super::scratch_directory(&format!("cache_{name}"))
    }

    #[test]
    fn an_entry_is_read_back_by_another_cache_on_the_same_directory() {
        let directory = scratch_directory("round_trip");
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        DiskCache::at(&directory).put(&key("a"), &payload);
        let reader = DiskCache::at(&directory);
        assert_eq!(reader.get(&key("a")).as_deref(), Some(payload.as_slice()));
        assert_eq!(reader.get(&key("b")), None);
        assert_eq!(reader.hits(), 1);
        assert!(reader.warnings().is_empty());
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A flipped byte anywhere in an entry, or an entry cut anywhere, is never served: a miss,
    /// one warning, the entry removed, and the next `put` makes it whole again.
    #[test]
    fn damaged_entries_are_refused_with_one_warning() {
        let directory = scratch_directory("damaged");
        let payload = b"// PTX of some kernel\n.version 8.0\n".repeat(20);
        let cache = DiskCache::at(&directory);
        cache.put(&key("k"), &payload);
        let path = directory.join(key("k").file_name());
        let whole = std::fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> = Vec::new();
        for at in (0..whole.len()).step_by(7) {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x10;
            damaged.push(flipped);
            damaged.push(whole[..at].to_vec());
        }
        for bytes in &damaged {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(cache.get(&key("k")), None, "a damaged entry was served");
            assert!(!path.exists(), "a damaged entry was left in place");
            cache.put(&key("k"), &payload);
            assert_eq!(cache.get(&key("k")).as_deref(), Some(payload.as_slice()));
        }
        let warnings = cache.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("damaged"), "{warnings:?}");
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A cache whose directory cannot be made (its parent is a file): nothing written, no
    /// error, one warning for any number of writes.
    #[test]
    fn an_unwritable_cache_warns_once_and_keeps_nothing() {
        let directory = scratch_directory("unwritable");
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("a_file");
        std::fs::write(&file, b"not a directory").unwrap();
        let cache = DiskCache::at(file.join("cache"));
        for name in ["x", "y", "z"] {
            cache.put(&key(name), b"payload");
            assert_eq!(cache.get(&key(name)), None);
        }
        let warnings = cache.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("kept in memory only"), "{warnings:?}");
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// Past its limit the cache drops the least recently used entries: a hit keeps an old
    /// entry, the one neither written nor read for longest goes.
    #[test]
    fn the_least_recently_used_entries_go_past_the_limit() {
        let directory = scratch_directory("limit");
        let payload = vec![7u8; 1000];
        let cache = DiskCache::at(&directory).with_limit(3500);
        let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
        for name in ["a", "b", "c"] {
            cache.put(&key(name), &payload);
            pause();
        }
        assert!(cache.get(&key("a")).is_some());
        pause();
        // Four entries pass 3500 bytes: the oldest unused ("b") and then "c" go, down to 2625.
        cache.put(&key("d"), &payload);
        let kept: Vec<bool> = ["a", "b", "c", "d"].iter().map(|n| cache.get(&key(n)).is_some()).collect();
        assert_eq!(kept, [true, false, false, true]);
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// Writers racing on the same keys: every read gives a whole entry or nothing, and no
    /// temporary file is left behind.
    #[test]
    fn concurrent_writers_never_expose_a_partial_entry() {
        let directory = scratch_directory("concurrent");
        let payload = |k: usize| -> Vec<u8> { (0..50_000).map(|i| ((i * 31 + k * 17) % 256) as u8).collect() };
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let directory = &directory;
                scope.spawn(move || {
                    let cache = DiskCache::at(directory);
                    for round in 0..30 {
                        let k = (round + writer) % 3;
                        cache.put(&key(&k.to_string()), &payload(k));
                        for k in 0..3 {
                            if let Some(bytes) = cache.get(&key(&k.to_string())) {
                                assert!(bytes == payload(k), "a partial or foreign entry for key {k}");
                            }
                        }
                        assert!(cache.warnings().is_empty(), "{:?}", cache.warnings());
                    }
                });
            }
        });
        let left: Vec<_> = std::fs::read_dir(&directory).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 3, "entries and leftovers: {left:?}");
        let _ = std::fs::remove_dir_all(&directory);
    }
}
