//! The dispatch table: the tuner's winners kept on disk, so that a serving process launches
//! each kernel with the compile-time parameters measured fastest for its problem, on its
//! device, with its compiler, without tuning again.
//!
//! An entry is keyed by a [`DispatchKey`]: the device (a GPU's name and compute capability,
//! or the CPU's model and thread count), the compiler's identity (the code generator's, or
//! the cpu backend's: a version and a digest of the sources it was built from), the kernel's
//! name, a digest of its module's source, its resolved format (dtype parameters and the
//! integer parameters fixed by the caller) and the problem's sizes (the bucketed one, `m` by
//! default, as the power of two at or above it). A table never answers for another device or
//! another build of the compiler: those keys differ.
//!
//! The file (`$TL_TUNE_TABLE`, else `dispatch.tbl` in the compile cache's directory) is text:
//! a first line naming the format and its version, the number of entries, one line per entry
//! (tab-separated fields), and a last line with an FNV-1a checksum of everything before it.
//! A file that does not read back whole (another format version, a wrong count or checksum,
//! a malformed line) is dropped with one warning: its kernels are tuned again, and the next
//! save writes a whole table. Saving writes a temporary file beside the table and renames it
//! over the table (atomic on one file system), after merging the entries another process
//! saved in the meantime; of two processes saving the same key at once, the later wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The first line of a table file, with the format's version.
const HEADER: &str = "tl dispatch table, format 1";

/// The largest table file read.
const MAX_TABLE_BYTES: u64 = 256 << 20;

/// What a winner is stored under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DispatchKey {
    /// The device timed: `sm_90 NVIDIA H200`, `cpu AMD EPYC 7B13, 2 threads`.
    pub device: String,
    /// The identity of the compiler that made the code timed.
    pub compiler: String,
    pub kernel: String,
    /// FNV-1a of the module's source, 16 hex digits.
    pub source: String,
    /// The resolved format, `NAME=VALUE` separated by spaces (`W=u4 S=f16 ...`).
    pub format: String,
    /// The problem, `NAME=VALUE` or `NAME<=BUCKET` separated by spaces (`m<=16 n=4096 k=4096`).
    pub sizes: String,
}

/// A winner: the tuned parameters' values and the time they measured.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedEntry {
    pub values: Vec<(String, i64)>,
    /// The winner's time in milliseconds (the sum over the kernels timed together).
    pub time_ms: f64,
}

/// Why a table file was dropped.
#[derive(Debug, PartialEq, Eq)]
enum Damage {
    Unreadable(String),
    Format(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Unreadable(e) => write!(f, "it cannot be read ({e})"),
            Damage::Format(why) => f.write_str(why),
        }
    }
}

/// The dispatch table of one file (or of memory only).
#[derive(Debug, Default)]
pub struct DispatchTable {
    path: Option<PathBuf>,
    entries: BTreeMap<DispatchKey, TunedEntry>,
    /// Keys inserted since the table was opened: what a save writes over the file's entries.
    inserted: Vec<DispatchKey>,
    warnings: Vec<String>,
}

impl DispatchTable {
    /// The table in `path`: empty when the file does not exist, and empty with a warning when
    /// it is damaged (see the module's header).
    pub fn open(path: impl Into<PathBuf>) -> DispatchTable {
        let path = path.into();
        let mut table = DispatchTable { path: Some(path.clone()), ..DispatchTable::default() };
        match read(&path) {
            Ok(entries) => table.entries = entries,
            Err(damage) => table.warn(format!(
                "the dispatch table {} is dropped: {damage}; its kernels will be tuned again",
                path.display()
            )),
        }
        table
    }

    /// A table kept in memory only.
    pub fn in_memory() -> DispatchTable {
        DispatchTable::default()
    }

    /// The table the environment names: `$TL_TUNE_TABLE`, else `dispatch.tbl` in the compile
    /// cache's directory; in memory only when there is neither (`TL_CACHE_DIR=off` and no
    /// `TL_TUNE_TABLE`).
    pub fn from_environment() -> DispatchTable {
        match default_path() {
            Some(path) => DispatchTable::open(path),
            None => DispatchTable::in_memory(),
        }
    }

    /// The file, if the table has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The winner stored for `key`.
    pub fn get(&self, key: &DispatchKey) -> Option<&TunedEntry> {
        self.entries.get(key)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&DispatchKey, &TunedEntry)> {
        self.entries.iter()
    }

    /// Stores `entry` for `key` (on disk at the next [`save`](DispatchTable::save)).
    pub fn insert(&mut self, key: DispatchKey, entry: TunedEntry) {
        if !self.inserted.contains(&key) {
            self.inserted.push(key.clone());
        }
        self.entries.insert(key, entry);
    }

    /// The warnings given so far (each also written to standard error once).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Writes the table: the file's current entries (another process may have saved since
    /// this table was opened; a damaged file contributes none) with this table's insertions
    /// over them, through a temporary file renamed over the table. A table in memory has
    /// nothing to do.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let mut merged = read(&path).unwrap_or_default();
        for key in &self.inserted {
            if let Some(entry) = self.entries.get(key) {
                merged.insert(key.clone(), entry.clone());
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        crate::cache::write_atomically(&path, encode(&merged).as_bytes())?;
        self.entries = merged;
        self.inserted.clear();
        Ok(())
    }

    fn warn(&mut self, message: String) {
        eprintln!("tl: warning: {message}");
        self.warnings.push(message);
    }
}

/// `$TL_TUNE_TABLE`, else `dispatch.tbl` in the compile cache's directory.
fn default_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TL_TUNE_TABLE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    crate::cache::default_directory().map(|d| d.join("dispatch.tbl"))
}

/// A field as written: tabs and line breaks (which separate fields and entries) become spaces.
fn field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

fn encode(entries: &BTreeMap<DispatchKey, TunedEntry>) -> String {
    let mut text = format!("{HEADER}\n{}\n", entries.len());
    for (key, entry) in entries {
        let values = entry.values.iter().map(|(name, value)| format!("{}={value}", field(name))).collect::<Vec<_>>().join(" ");
        let fields = [&key.device, &key.compiler, &key.kernel, &key.source, &key.format, &key.sizes].map(|f| field(f));
        text.push_str(&format!("{}\t{values}\t{}\n", fields.join("\t"), entry.time_ms));
    }
    let checksum = crate::cache::fnv1a(text.as_bytes());
    text.push_str(&format!("checksum {checksum:016x}\n"));
    text
}

/// The entries of the file at `path`; none when it does not exist.
fn read(path: &Path) -> Result<BTreeMap<DispatchKey, TunedEntry>, Damage> {
    // A table of a million entries is about 200 MB; a larger file is not one this code wrote.
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_TABLE_BYTES => return Err(Damage::Format(format!("it is larger than {MAX_TABLE_BYTES} bytes"))),
        Ok(m) if !m.is_file() => return Err(Damage::Format("it is not a regular file".into())),
        _ => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Damage::Unreadable(e.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|_| Damage::Format("it is not text".into()))?;
    decode(&text)
}

fn decode(text: &str) -> Result<BTreeMap<DispatchKey, TunedEntry>, Damage> {
    let damaged = |why: &str| Damage::Format(why.to_string());
    let first = text.lines().next().unwrap_or_default();
    if first != HEADER {
        return Err(if first.starts_with("tl dispatch table") {
            Damage::Format(format!("it was written in another format (`{first}`)"))
        } else {
            damaged("it is not a dispatch table")
        });
    }
    let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let (body, last) = text.split_at(body_end);
    let stored = last
        .trim_end_matches('\n')
        .strip_prefix("checksum ")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| damaged("its checksum line is missing (truncated?)"))?;
    if stored != crate::cache::fnv1a(body.as_bytes()) {
        return Err(damaged("its checksum does not match its contents"));
    }
    let mut lines = body.lines().skip(1);
    let count: usize = lines.next().and_then(|l| l.parse().ok()).ok_or_else(|| damaged("its entry count is missing"))?;
    let mut entries = BTreeMap::new();
    for line in lines.by_ref() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [device, compiler, kernel, source, format, sizes, values, time] = fields[..] else {
            return Err(damaged("an entry does not have 8 fields"));
        };
        let values = values
            .split_whitespace()
            .map(|item| {
                let (name, value) = item.split_once('=')?;
                Some((name.to_string(), value.parse::<i64>().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| damaged("an entry's winner is not NAME=INTEGER"))?;
        let time_ms: f64 = time.parse().map_err(|_| damaged("an entry's time is not a number"))?;
        let key = DispatchKey {
            device: device.into(),
            compiler: compiler.into(),
            kernel: kernel.into(),
            source: source.into(),
            format: format.into(),
            sizes: sizes.into(),
        };
        entries.insert(key, TunedEntry { values, time_ms });
    }
    if entries.len() != count {
        return Err(damaged("it holds another number of entries than it says"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kernel: &str, sizes: &str) -> DispatchKey {
        DispatchKey {
            device: "cpu Test CPU, 2 threads".into(),
            compiler: "tl-cpu 0.1.0 sources 0123456789abcdef".into(),
            kernel: kernel.into(),
            source: "fedcba9876543210".into(),
            format: "W=u4 S=f16".into(),
            sizes: sizes.into(),
        }
    }

    fn entry(bm: i64, time_ms: f64) -> TunedEntry {
        TunedEntry { values: vec![("BM".into(), bm), ("STAGES".into(), 3)], time_ms }
    }

    fn scratch(name: &str) -> PathBuf {
        crate::cache::scratch_directory(&format!("table_{name}")).join("dispatch.tbl")
    }

    #[test]
    fn entries_survive_a_save_and_another_open() {
        let path = scratch("round-trip");
        let mut table = DispatchTable::open(&path);
        assert!(table.warnings().is_empty() && table.entries().next().is_none());
        table.insert(key("qmatmul", "m<=16 n=256 k=512"), entry(16, 0.125));
        table.insert(key("qmatmul", "m<=64 n=256 k=512"), entry(64, 1.5e-3));
        table.save().unwrap();
        let reopened = DispatchTable::open(&path);
        assert!(reopened.warnings().is_empty());
        assert_eq!(reopened.get(&key("qmatmul", "m<=16 n=256 k=512")), Some(&entry(16, 0.125)));
        assert_eq!(reopened.get(&key("qmatmul", "m<=64 n=256 k=512")), Some(&entry(64, 1.5e-3)));
        assert_eq!(reopened.get(&key("qmatmul", "m<=32 n=256 k=512")), None);
        let mut other_device = key("qmatmul", "m<=16 n=256 k=512");
        other_device.device = "sm_90 NVIDIA H200".into();
        assert_eq!(reopened.get(&other_device), None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_save_keeps_what_another_process_saved_meanwhile() {
        let path = scratch("merge");
        let mut first = DispatchTable::open(&path);
        let mut second = DispatchTable::open(&path);
        first.insert(key("qmatmul", "m<=16 n=256 k=512"), entry(16, 1.0));
        first.save().unwrap();
        second.insert(key("softmax", "m<=16 n=256"), entry(32, 2.0));
        second.save().unwrap();
        let reopened = DispatchTable::open(&path);
        assert_eq!(reopened.entries().count(), 2);
        assert_eq!(reopened.get(&key("qmatmul", "m<=16 n=256 k=512")), Some(&entry(16, 1.0)));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Every cut of the file and a flipped byte anywhere in it drop the table with one
    /// warning (never a wrong winner), and a save after that writes a whole table again.
    #[test]
    fn damaged_tables_are_dropped_with_a_warning_and_rewritten() {
        let path = scratch("damage");
        let mut table = DispatchTable::open(&path);
        table.insert(key("qmatmul", "m<=16 n=256 k=512"), entry(16, 0.5));
        table.insert(key("qmatmul", "m<=1 n=256 k=512"), entry(32, 0.25));
        table.save().unwrap();
        let whole = std::fs::read(&path).unwrap();
        let mut damaged = Vec::new();
        for cut in (0..whole.len() - 1).step_by(3) {
            damaged.push(whole[..cut].to_vec());
        }
        for at in (0..whole.len()).step_by(5) {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x04;
            damaged.push(flipped);
        }
        for bytes in damaged {
            std::fs::write(&path, &bytes).unwrap();
            let mut table = DispatchTable::open(&path);
            assert_eq!(table.warnings().len(), 1, "no warning for {:?}", String::from_utf8_lossy(&bytes));
            assert!(table.warnings()[0].contains("tuned again"), "{}", table.warnings()[0]);
            assert_eq!(table.entries().count(), 0);
            table.insert(key("qmatmul", "m<=16 n=256 k=512"), entry(16, 0.5));
            table.save().unwrap();
            let repaired = DispatchTable::open(&path);
            assert!(repaired.warnings().is_empty());
            assert_eq!(repaired.get(&key("qmatmul", "m<=16 n=256 k=512")), Some(&entry(16, 0.5)));
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn another_format_version_is_named_in_the_warning() {
        let path = scratch("version");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "tl dispatch table, format 0\n0\nchecksum 0000000000000000\n").unwrap();
        let table = DispatchTable::open(&path);
        assert_eq!(table.warnings().len(), 1);
        assert!(table.warnings()[0].contains("another format (`tl dispatch table, format 0`)"), "{}", table.warnings()[0]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_directory_in_the_tables_place_is_a_warning_not_a_failure() {
        let path = scratch("directory");
        std::fs::create_dir_all(&path).unwrap();
        let mut table = DispatchTable::open(&path);
        assert_eq!(table.warnings().len(), 1);
        assert!(table.warnings()[0].contains("not a regular file"), "{}", table.warnings()[0]);
        table.insert(key("qmatmul", "m<=16"), entry(16, 1.0));
        assert!(table.save().is_err());
        assert_eq!(table.get(&key("qmatmul", "m<=16")), Some(&entry(16, 1.0)), "the winner stays in memory");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn fields_with_separators_are_written_as_one_field() {
        let mut entries = BTreeMap::new();
        let mut tabbed = key("qmatmul", "m<=16");
        tabbed.device = "a\tdevice\nname".into();
        entries.insert(tabbed, entry(16, 1.0));
        let decoded = decode(&encode(&entries)).unwrap();
        assert_eq!(decoded.keys().next().unwrap().device, "a device name");
    }
}
