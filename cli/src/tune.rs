//! `tlc tune`: searches a kernel's compile-time parameters for one problem and stores the
//! winner in the dispatch table (`tl_runtime::tune`), with progress on standard error.

use super::{Options, Usage, compiled, name_value, once, parse_int, write_stderr};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tl_runtime::tune::{self, DispatchTable, Outcome, TuneProgress, TuneReport, TuneRequest, TuneSpace, TuneTarget};
use tl_runtime::{Arch, Backend, Module, Number};

/// The options of `tlc tune` (with `--kernel`, `-D`, `--arch` and `--seed`).
pub const OPTIONS: &[&str] = &[
    "--kernel", "-D", "--arch", "--seed", "--size", "--space", "--target", "--then", "--jobs", "--runs", "--no-check", "--table",
    "--retune", "--bucket",
];

/// The options of `tlc tune` given at most once.
pub const SINGLE: &[&str] = &["--target", "--jobs", "--runs", "--no-check", "--table", "--retune", "--bucket"];

#[derive(Default)]
pub struct TuneOptions {
    /// Each size's values (`--size m=1,16,64`): every combination is a problem of its own.
    pub sizes: Vec<(String, Vec<i64>)>,
    space: Vec<(String, Vec<i64>)>,
    target: Option<String>,
    then: Vec<String>,
    jobs: Option<usize>,
    runs: Option<u32>,
    no_check: bool,
    table: Option<PathBuf>,
    retune: bool,
    bucket: Option<String>,
}

/// Takes a `tlc tune` option (`Ok(false)`: one the common parser handles).
pub fn parse_option(
    o: &mut TuneOptions,
    flag: &str,
    value: &mut dyn FnMut(&str) -> Result<String, Usage>,
    seen: &mut Vec<String>,
) -> Result<bool, Usage> {
    match flag {
        "--size" => {
            let (name, v) = name_value(&value(flag)?, flag)?;
            once(seen, flag, &name)?;
            let values = v.split(',').map(|v| parse_int(v.trim(), "--size")).collect::<Result<Vec<_>, _>>()?;
            o.sizes.push((name, values));
        }
        "--space" => {
            let parameter = TuneSpace::parse_parameter(&value(flag)?).map_err(|e| Usage(format!("--space: {e}")))?;
            once(seen, flag, &parameter.0)?;
            o.space.push(parameter);
        }
        "--target" => {
            let target = value(flag)?;
            if !["cuda", "cpu", "compile"].contains(&target.as_str()) {
                return Err(Usage(format!("unknown --target `{target}` (cuda, cpu or compile)")));
            }
            o.target = Some(target);
        }
        "--then" => o.then.push(value(flag)?),
        "--jobs" => o.jobs = Some(positive(&value(flag)?, flag)? as usize),
        "--runs" => o.runs = Some(positive(&value(flag)?, flag)?.min(1000) as u32),
        "--no-check" => o.no_check = true,
        "--table" => o.table = Some(PathBuf::from(value(flag)?)),
        "--retune" => o.retune = true,
        "--bucket" => o.bucket = Some(value(flag)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn positive(text: &str, flag: &str) -> Result<i64, Usage> {
    let v = parse_int(text, flag)?;
    if v < 1 {
        return Err(Usage(format!("{flag} must be at least 1, not {v}")));
    }
    Ok(v)
}

/// `tlc tune FILE --kernel K --size m=.. ...`.
pub fn tune(o: &Options, path: &Path) -> Result<bool> {
    let t = &o.tune;
    let Some(module) = compiled(Module::from_file(path))? else { return Ok(false) };
    let module = module.with_code_generator(tl_ptx::code_generator());
    let kernel = kernel_name(o, &module, path)?;
    let arch = o.arch.unwrap_or(Arch::Sm80);
    let target = match t.target.as_deref() {
        Some("cuda") => TuneTarget::Cuda,
        Some("cpu") => TuneTarget::Cpu,
        Some(_) => TuneTarget::Compile(arch),
        None if tl_runtime::cuda::driver_available() => TuneTarget::Cuda,
        None => {
            write_stderr("tl: no CUDA driver: every candidate is compiled, none timed (--target cpu times them on the cpu backend)\n");
            TuneTarget::Compile(arch)
        }
    };
    if target == TuneTarget::Cuda && o.arch.is_some() {
        write_stderr("tl: warning: --arch applies to --target compile; on the GPU its own architecture's PTX is timed\n");
    }
    let mut request = TuneRequest::new(&module, &kernel, &[], target);
    request.consts = o.consts.clone();
    request.then = t.then.clone();
    request.bucket = t.bucket.clone();
    request.seed = o.seed;
    request.check = !t.no_check;
    // Named parameters replace their default values; the rest of the default space stays.
    for (name, values) in &t.space {
        match request.space.parameters.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = values.clone(),
            None => request.space.parameters.push((name.clone(), values.clone())),
        }
    }
    // A parameter fixed with -D is not searched.
    request.space.parameters.retain(|(name, _)| !o.consts.iter().any(|(fixed, _)| fixed == name) || t.space.iter().any(|(n, _)| n == name));
    if let Some(jobs) = t.jobs {
        request.jobs = jobs;
    }
    if let Some(runs) = t.runs {
        request.runs = runs;
    }
    let mut table = match &t.table {
        Some(path) => DispatchTable::open(path),
        None => DispatchTable::from_environment(),
    };
    let mut ok = true;
    for sizes in tune::combinations(&t.sizes) {
        request.sizes = sizes;
        ok &= tune_problem(&module, &request, &mut table, t.retune)?;
    }
    Ok(ok)
}

/// One problem of `tlc tune`: found in the table (unless `retune`), or searched and stored.
fn tune_problem(module: &Module, request: &TuneRequest, table: &mut DispatchTable, retune: bool) -> Result<bool> {
    let (kernel, target) = (&request.kernel, request.target);
    let key = request.dispatch_key(module)?;
    if let (Some(entry), false, false) = (table.get(&key), retune, matches!(target, TuneTarget::Compile(_))) {
        super::write_stdout(&format!(
            "{kernel} is tuned for {} on {}: {} ({:.4} ms); --retune searches again\n",
            key.sizes,
            key.device,
            describe(&entry.values),
            entry.time_ms
        ))?;
        return Ok(true);
    }
    let space_text = request.space.parameters.iter().map(|(n, v)| format!("{n}={}", v.iter().map(i64::to_string).collect::<Vec<_>>().join(","))).collect::<Vec<_>>().join(" ");
    write_stderr(&format!("tl: tune `{kernel}` for {} on {}: {} candidates ({space_text})\n", key.sizes, key.device, request.space.len()));
    let hits_before = module.cache().hits();
    let mut progress = Progress::new(kernel);
    let report = tune::tune(module, request, &mut |event| progress.report(event))?;
    let from_cache = module.cache().hits() - hits_before;
    super::write_stdout(&summary(&report, target, from_cache))?;
    let Some(entry) = report.entry() else {
        return Ok(matches!(target, TuneTarget::Compile(_)) && report.candidates.iter().any(|c| c.outcome == Outcome::Compiled));
    };
    table.insert(report.key.clone(), entry);
    match table.save() {
        Ok(()) => match table.path() {
            Some(p) => super::write_stdout(&format!("stored in {} under {} {}\n", p.display(), report.key.kernel, report.key.sizes))?,
            None => write_stderr("tl: warning: no dispatch table file (TL_CACHE_DIR=off and no TL_TUNE_TABLE or --table): the winner is not kept\n"),
        },
        Err(e) => write_stderr(&format!(
            "tl: warning: cannot write the dispatch table {}: {e}; the winner is not kept\n",
            table.path().map_or_else(String::new, |p| p.display().to_string())
        )),
    }
    Ok(true)
}

fn describe(values: &[(String, i64)]) -> String {
    values.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
}

/// The search's results: compile statistics, rejections grouped by reason, the fastest
/// candidates and the winner.
fn summary(report: &TuneReport, target: TuneTarget, from_cache: usize) -> String {
    let mut text = String::new();
    let mut sorted: Vec<f64> = report.candidates.iter().filter(|c| !matches!(c.outcome, Outcome::Rejected(_))).map(|c| c.compile_ms).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    text.push_str(&format!(
        "compiled {} candidates in {:.2} s with {} workers: {} rejected, {} from the compile cache, median {:.1} ms each\n",
        report.candidates.len(),
        report.compile_seconds,
        report.jobs,
        report.rejected(),
        from_cache,
        median
    ));
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for candidate in &report.candidates {
        if let Outcome::Rejected(why) | Outcome::Failed(why) = &candidate.outcome {
            match reasons.iter_mut().find(|(r, _)| r == why) {
                Some((_, count)) => *count += 1,
                None => reasons.push((why.clone(), 1)),
            }
        }
    }
    for (why, count) in reasons.iter().take(5) {
        text.push_str(&format!("  {count} x {why}\n"));
    }
    if reasons.len() > 5 {
        text.push_str(&format!("  ... and {} other reasons\n", reasons.len() - 5));
    }
    if let TuneTarget::Compile(arch) = target {
        text.push_str(&format!("no device timed them (target compile, {}): nothing is stored\n", arch.name()));
        return text;
    }
    let mut timed: Vec<(f64, &tune::Candidate)> = report
        .candidates
        .iter()
        .filter_map(|c| if let Outcome::Timed(ms) = c.outcome { Some((ms, c)) } else { None })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    text.push_str(&format!("timed {} candidates in {:.2} s on {}; the fastest:\n", timed.len(), report.timing_seconds, report.key.device));
    for (ms, candidate) in timed.iter().take(5) {
        text.push_str(&format!("  {:>10.4} ms  {}\n", ms, describe(&candidate.values)));
    }
    match report.winner.map(|w| &report.candidates[w]) {
        Some(winner) => {
            let Outcome::Timed(ms) = winner.outcome else { return text };
            let checked = if report.checked { "its result checked against the reference" } else { "its result not checked" };
            text.push_str(&format!("winner {} at {ms:.4} ms ({checked})\n", describe(&winner.values)));
        }
        None => text.push_str("no candidate ran correctly: nothing is stored\n"),
    }
    text
}

/// Progress lines on standard error, at most one a second (and none for a search that ends
/// sooner); `TL_PROGRESS=0` turns them off, `TL_PROGRESS=S` sets the interval.
struct Progress {
    kernel: String,
    start: Instant,
    last: Option<Instant>,
    interval: Option<Duration>,
}

impl Progress {
    fn new(kernel: &str) -> Progress {
        let interval = tl_vm::progress::interval_setting(Duration::from_secs(1));
        Progress { kernel: kernel.to_string(), start: Instant::now(), last: None, interval }
    }

    fn report(&mut self, event: &TuneProgress) {
        let Some(interval) = self.interval else { return };
        let now = Instant::now();
        let due = now.duration_since(self.last.unwrap_or(self.start)) >= interval;
        let line = match event {
            TuneProgress::Compiled { done, total, rejected } if due || (done == total && self.last.is_some()) => {
                format!("compiled {done} of {total} candidates ({rejected} rejected)")
            }
            TuneProgress::Timed { done, total, best_ms } if due || (done == total && self.last.is_some()) => {
                let best = best_ms.map_or_else(String::new, |b| format!(", best {b:.4} ms"));
                format!("timed {done} of {total} candidates{best}")
            }
            TuneProgress::Checked { passed: false, index } => format!("candidate {} computes a wrong result; checking the next", index + 1),
            _ => return,
        };
        self.last = Some(now);
        write_stderr(&format!("tl: tune `{}`: {line} after {:.1} s\n", self.kernel, now.duration_since(self.start).as_secs_f64()));
    }
}

/// `tlc run --tuned`: the kernel compiled with the winner the dispatch table holds for the
/// integer sizes `--arg` gives, on the backend's device; the defaults when it holds none (said
/// on standard error either way). `None` when the source has errors (already printed).
pub fn load_tuned_kernel(o: &Options, path: &Path, backend: Backend) -> Result<Option<tl_runtime::Kernel>> {
    let target = match backend {
        Backend::Cpu => TuneTarget::Cpu,
        Backend::Cuda => TuneTarget::Cuda,
        other => bail!("--tuned takes the parameters tuned for a device: --backend cpu or cuda, not {}", other.name()),
    };
    let Some(module) = compiled(Module::from_file(path))? else { return Ok(None) };
    let module = module.with_code_generator(tl_ptx::code_generator());
    let kernel = kernel_name(o, &module, path)?;
    let sizes: Vec<(String, i64)> =
        o.scalars.iter().filter_map(|(name, value)| if let Number::Int(v) = value { Some((name.clone(), i64::try_from(*v).ok()?)) } else { None }).collect();
    let table = DispatchTable::from_environment();
    let Some(tuned) = compiled(module.tuned_kernel(&kernel, &o.consts, &sizes, None, target, &table))? else { return Ok(None) };
    let place = table.path().map_or_else(|| "memory".to_string(), |p| p.display().to_string());
    match &tuned.entry {
        Some(entry) => write_stderr(&format!("tl: tuned {}: {} ({place})\n", kernel, describe(&entry.values))),
        None => write_stderr(&format!("tl: {kernel} is not tuned for {} on {} ({place}): its defaults\n", tuned.key.sizes, tuned.key.device)),
    }
    Ok(Some(tuned.kernel))
}

/// The kernel `--kernel` names, else the file's first.
fn kernel_name(o: &Options, module: &Module, path: &Path) -> Result<String> {
    match &o.kernel {
        Some(k) => Ok(k.clone()),
        None => module.kernel_names().into_iter().next().ok_or_else(|| anyhow::anyhow!("{}: the file has no kernel", path.display())),
    }
}
