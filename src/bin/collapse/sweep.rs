//! `collapse sweep plan|run|task|slurm|status|collect`: grids of `collapse run`s (see
//! `collapse_kernels::sweep`). Every job runs through `collapse run`'s own code path, in this
//! process (`task`) or in child processes of this binary (`run`, Slurm tasks).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use collapse_kernels::gpu::GpuOptions;
use collapse_kernels::sweep::collect::{self, Collected};
use collapse_kernels::sweep::slurm::{self, SlurmOptions};
use collapse_kernels::sweep::status::{self, JobState};
use collapse_kernels::sweep::{self as sw, Job, Manifest};
use collapse_kernels::{Error, Result};

use crate::common::progress_bar;
use crate::run::{self as run_cmd, RunArgs};

/// `collapse sweep`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Expand a sweep spec (TOML: [base] = any `collapse run` flag without its dashes; [axes] =
    /// lists of values, or { count = N, start = S }; [zip.NAME] = axes that vary together) into
    /// a sweep directory: sweep.json (spec, jobs with index → flags, hash), spec.toml, jobs.csv
    /// and one run directory per job (jobs/NNNNN/). Every job's flags are checked by `collapse
    /// run`'s parser first. Replanning into a sweep directory keeps its jobs and adds only the
    /// new ones (a spec that drops or changes a job is refused: plan it into a new directory).
    Plan(PlanArgs),
    /// Run the sweep's jobs that are not done on this machine, --jobs at a time (each a child
    /// process with cores/--jobs threads), resuming partial ones, skipping finished ones, going
    /// on past failures; a progress bar over jobs, then a summary of failures with each one's
    /// last error line. Each job's output is appended to DIR/logs/N.log.
    Run(RunSweepArgs),
    /// Run one job (idempotent: a finished job is skipped, a partial one resumed, a job whose
    /// run lock another process holds is refused, so a requeued or duplicated Slurm task
    /// cannot corrupt it). The index defaults to SLURM_ARRAY_TASK_ID + --index-offset.
    Task(TaskArgs),
    /// Write an sbatch script for the jobs that are not done (a job array, --array=…%L, with
    /// --requeue), one per block of MaxArraySize indices, into DIR/slurm/; --submit calls
    /// sbatch and records the job ids in DIR/slurm/submitted.csv. Resubmitting after a
    /// cancellation or failure submits only the missing jobs. The script runs this binary by
    /// absolute path (or --collapse) and uses whichever cluster the environment names
    /// (SLURM_CONF).
    Slurm(SlurmArgs),
    /// Count the jobs that are done, running, failed, partial (checkpointed, resumable) and
    /// pending, and list the failures with their last error line.
    Status(StatusArgs),
    /// Gather the finished jobs into two tidy CSV tables: the long table (job, axes,
    /// generation, replicate, every metric) and the summary per (group axes, generation,
    /// metric): n, mean, sd and the 95% Student-t confidence interval of the mean; plus
    /// metrics_dictionary.csv, every metric's definition.
    Collect(CollectArgs),
}

/// `collapse sweep plan`'s flags.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
    /// The sweep directory (new or empty, or one holding this sweep: see replanning).
    #[arg(long)]
    pub out: PathBuf,
}

/// `collapse sweep run`'s flags.
#[derive(clap::Args, Debug)]
pub struct RunSweepArgs {
    /// The sweep directory.
    pub dir: PathBuf,
    /// Jobs at once (0 = one per core). Each gets max(1, cores / jobs) threads, so jobs ×
    /// threads ≤ cores (cores: the global --threads, else the machine's).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
}

/// `collapse sweep task`'s flags.
#[derive(clap::Args, Debug)]
pub struct TaskArgs {
    /// The sweep directory.
    pub dir: PathBuf,
    /// The job's index (default: SLURM_ARRAY_TASK_ID + --index-offset).
    #[arg(long)]
    pub index: Option<usize>,
    /// Added to SLURM_ARRAY_TASK_ID (sweeps larger than Slurm's MaxArraySize are submitted in
    /// blocks, each with its offset).
    #[arg(long, default_value_t = 0)]
    pub index_offset: usize,
}

/// `collapse sweep slurm`'s flags.
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// The sweep directory (on a file system the cluster's nodes share).
    pub dir: PathBuf,
    /// #SBATCH --partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// #SBATCH --time (e.g. 00:30:00).
    #[arg(long)]
    pub time: Option<String>,
    /// #SBATCH --cpus-per-task (also each task's --threads).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// #SBATCH --mem (e.g. 2G).
    #[arg(long)]
    pub mem: Option<String>,
    /// At most this many tasks at once (the array's %L; 0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub array_limit: usize,
    /// A further #SBATCH argument, verbatim (repeatable), e.g. --sbatch-arg=--account=lab.
    #[arg(long, allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// The collapse binary the tasks run (default: this one, by absolute path).
    #[arg(long)]
    pub collapse: Option<PathBuf>,
    /// Submit the script(s) with sbatch and record the job ids.
    #[arg(long)]
    pub submit: bool,
}

/// `collapse sweep status`'s flags.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The sweep directory.
    pub dir: PathBuf,
    /// Print one JSON object (counts, and index → state, with the error of failed jobs).
    #[arg(long)]
    pub json: bool,
}

/// `collapse sweep collect`'s flags.
#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// The sweep directory.
    pub dir: PathBuf,
    /// The long table's file (default DIR/collected.csv; the summary goes beside it as
    /// STEM_summary.csv, the dictionary as metrics_dictionary.csv). An existing file given
    /// here is refused unless --force; the default files in DIR are rewritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Axes the summary groups by, comma-separated (default: every axis but seed).
    #[arg(long, value_delimiter = ',')]
    pub group_by: Option<Vec<String>>,
    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,
}

/// `collapse sweep …`.
pub fn sweep(options: &GpuOptions, c: &SweepCommand) -> Result<()> {
    match c {
        SweepCommand::Plan(a) => plan(a),
        SweepCommand::Run(a) => run_local(a),
        SweepCommand::Task(a) => task(options, a),
        SweepCommand::Slurm(a) => slurm_cmd(a),
        SweepCommand::Status(a) => status_cmd(a),
        SweepCommand::Collect(a) => collect_cmd(a),
    }
}

/// `collapse run`'s arguments alone, for parsing a job's flags.
#[derive(Parser, Debug)]
#[command(name = "collapse run")]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

/// A job's `collapse run` flags parsed as `collapse run` parses them, with the flags typed.
fn parse_run(args: &[String]) -> Result<(RunArgs, Vec<String>)> {
    let matches = RunOnly::command()
        .try_get_matches_from(
            std::iter::once("collapse run".to_string()).chain(args.iter().cloned()),
        )
        .map_err(|e| {
            Error::InvalidArgument(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string(),
            )
        })?;
    let given = crate::given_on_command_line(&matches);
    let r = RunOnly::from_arg_matches(&matches).map_err(|e| {
        Error::InvalidArgument(e.to_string().lines().next().unwrap_or("").to_string())
    })?;
    Ok((r.run, given))
}

fn plan(a: &PlanArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.spec)
        .map_err(|e| Error::Io(format!("{}: {e}", a.spec.display())))?;
    let spec_name = a.spec.display().to_string();
    let check = |j: &Job| -> Result<()> {
        let describe = || {
            j.axes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut args = j.args.clone();
        args.extend(["--out".into(), "/nonexistent".into()]);
        let (r, _) = parse_run(&args).map_err(|e| {
            Error::InvalidArgument(format!("{spec_name}: job ({}): {e}", describe()))
        })?;
        let backend = if r.backend == "auto" {
            "cpu32".to_string()
        } else {
            r.backend.clone()
        };
        let cfg = r.exp.config(backend).map_err(|e| {
            Error::InvalidArgument(format!("{spec_name}: job ({}): {e}", describe()))
        })?;
        collapse_kernels::experiment::check_config(&cfg)
            .map_err(|e| Error::InvalidArgument(format!("{spec_name}: job ({}): {e}", describe())))
    };
    let report = sw::plan(&text, &spec_name, &a.out, &check)?;
    let m = &report.manifest;
    println!(
        "{}: {} jobs ({} kept, {} new) over axes {} (hash {}); run them with `collapse sweep \
         run {}` or `collapse sweep slurm {} --submit`",
        a.out.display(),
        m.jobs.len(),
        report.kept,
        report.added,
        if m.axes.is_empty() {
            "(none)".to_string()
        } else {
            m.axes.join(", ")
        },
        m.hash,
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// Cores this process may use: the global --threads / COLLAPSE_THREADS (which size rayon's
/// global pool before any command runs), else the machine's.
fn cores() -> usize {
    rayon::current_num_threads()
}

fn run_local(a: &RunSweepArgs) -> Result<()> {
    let root = &a.dir;
    let m = Manifest::read(root)?;
    let states = status::states(root, &m);
    let todo = status::runnable(&states);
    let running = states
        .iter()
        .filter(|s| matches!(s, JobState::Running(_)))
        .count();
    let cores = cores();
    let jobs = if a.jobs == 0 { cores } else { a.jobs }.clamp(1, todo.len().max(1));
    let threads = (cores / jobs).max(1);
    eprintln!(
        "{}: {} jobs, {} done, {running} running elsewhere, {} to run: {jobs} at a time, {threads} \
         thread(s) each",
        root.display(),
        m.jobs.len(),
        m.jobs.len() - todo.len() - running,
        todo.len()
    );
    std::fs::create_dir_all(root.join("logs"))
        .map_err(|e| Error::Io(format!("{}: {e}", root.join("logs").display())))?;
    let exe = std::env::current_exe().map_err(|e| Error::Io(format!("current_exe: {e}")))?;
    let bar = progress_bar(
        todo.len() as u64,
        "{bar:30} {pos}/{len} jobs, {elapsed} (eta {eta}) {msg}",
    );
    let next = AtomicUsize::new(0);
    let failed: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let spawn_error: Mutex<Option<Error>> = Mutex::new(None);
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let ok = match run_child(&exe, root, i, threads) {
                        Ok(ok) => ok,
                        Err(e) => {
                            let _ = status::mark_failed(root, i, &e.to_string());
                            spawn_error.lock().unwrap().get_or_insert(e);
                            false
                        }
                    };
                    if !ok {
                        let mut f = failed.lock().unwrap();
                        f.push(i);
                        bar.set_message(format!("{} failed", f.len()));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failed = failed.into_inner().unwrap();
    failed.sort_unstable();
    println!(
        "{}: ran {} jobs in {:.1} s: {} done, {} failed",
        root.display(),
        todo.len(),
        t.elapsed().as_secs_f64(),
        todo.len() - failed.len(),
        failed.len()
    );
    print_failures(root, &m, &failed);
    if let Some(e) = spawn_error.into_inner().unwrap() {
        return Err(e);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{} of {} jobs failed (see above and DIR/logs/N.log); `collapse sweep run {}` \
             retries them",
            failed.len(),
            todo.len(),
            root.display()
        )))
    }
}

/// Run job `i` as a child `collapse sweep task`, output appended to its log; whether it
/// succeeded.
fn run_child(exe: &Path, root: &Path, i: usize, threads: usize) -> Result<bool> {
    let log_path = status::log_file(root, i);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Io(format!("{}: {e}", log_path.display())))?;
    let err = log
        .try_clone()
        .map_err(|e| Error::Io(format!("{}: {e}", log_path.display())))?;
    let st = Command::new(exe)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("sweep")
        .arg("task")
        .arg(root)
        .arg("--index")
        .arg(i.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("COLLAPSE_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .map_err(|e| Error::Io(format!("{}: {e}", exe.display())))?;
    Ok(st.success())
}

/// Print the failed jobs among `which` with their axes and last error line.
fn print_failures(root: &Path, m: &Manifest, which: &[usize]) {
    for &i in which {
        let line = match status::job_state(root, m, i) {
            JobState::Failed(l) => l,
            s => s.word().to_string(),
        };
        println!(
            "  job {i} ({}): {line}  [log: {}]",
            axes_text(&m.jobs[i].axes),
            status::log_file(root, i).display()
        );
    }
}

fn axes_text(axes: &[(String, String)]) -> String {
    axes.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn task(options: &GpuOptions, a: &TaskArgs) -> Result<()> {
    let root = &a.dir;
    let index = match a.index {
        Some(i) => i,
        None => {
            let id = std::env::var("SLURM_ARRAY_TASK_ID").map_err(|_| {
                Error::InvalidArgument(
                    "--index is required outside a Slurm array task (SLURM_ARRAY_TASK_ID is unset)"
                        .into(),
                )
            })?;
            let id: usize = id.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("SLURM_ARRAY_TASK_ID={id:?} is not an index"))
            })?;
            id + a.index_offset
        }
    };
    let m = Manifest::read(root)?;
    let job = m.job(index)?.clone();
    let dir = m.job_dir(root, index);
    match status::job_state(root, &m, index) {
        JobState::Done => {
            println!(
                "job {index} ({}) is done: nothing to do",
                axes_text(&job.axes)
            );
            return Ok(());
        }
        JobState::Running(h) => {
            // Not a failure of the job: another process has it.
            return Err(Error::InvalidArgument(format!(
                "job {index} is being run by another process ({h}): nothing done"
            )));
        }
        _ => {}
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let d = dir.display().to_string();
    let mut args: Vec<String> = if dir.join("state.json").exists() {
        vec!["--resume".into(), d]
    } else {
        let mut v = job.args.clone();
        // The directory is the sweep's own: files a killed first attempt left before its first
        // checkpoint are replaced.
        v.extend(["--out".into(), d, "--force".into()]);
        v
    };
    if !args.iter().any(|x| x == "--no-plots") {
        // A sweep plots its groups (`collapse plot SWEEP_DIR`), not each job.
        args.push("--no-plots".into());
    }
    if !args.iter().any(|x| x == "--replicate-jobs") {
        args.extend(["--replicate-jobs".into(), cores().to_string()]);
    }
    eprintln!(
        "job {index} ({}): collapse run {}",
        axes_text(&job.axes),
        args.join(" ")
    );
    let result = parse_run(&args).and_then(|(r, given)| run_cmd::run(options, &r, &given));
    match result {
        Ok(()) => status::mark_done(root, index),
        Err(e) => {
            if !matches!(status::job_state(root, &m, index), JobState::Running(_)) {
                status::mark_failed(root, index, &e.to_string())?;
            }
            Err(e)
        }
    }
}

/// Slurm's MaxArraySize (`scontrol show config`), 1001 when it cannot be read.
fn max_array_size() -> usize {
    Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "MaxArraySize")
                    .then(|| v.trim().parse().ok())
                    .flatten()
            })
        })
        .unwrap_or(1001)
}

fn slurm_cmd(a: &SlurmArgs) -> Result<()> {
    let root = std::fs::canonicalize(&a.dir)
        .map_err(|e| Error::Io(format!("{}: {e}", a.dir.display())))?;
    let m = Manifest::read(&root)?;
    let states = status::states(&root, &m);
    let pending = status::runnable(&states);
    if pending.is_empty() {
        println!(
            "{}: every job is done or running: nothing to submit",
            root.display()
        );
        return Ok(());
    }
    let collapse = match &a.collapse {
        Some(p) => std::fs::canonicalize(p)
            .map_err(|e| Error::Io(format!("--collapse {}: {e}", p.display())))?,
        None => std::env::current_exe().map_err(|e| Error::Io(format!("current_exe: {e}")))?,
    };
    let o = SlurmOptions {
        partition: a.partition.clone(),
        time: a.time.clone(),
        cpus_per_task: a.cpus_per_task,
        mem: a.mem.clone(),
        array_limit: a.array_limit,
        extra: a.sbatch_arg.clone(),
    };
    let sdir = root.join("slurm");
    for d in [&sdir, &root.join("logs")] {
        std::fs::create_dir_all(d).map_err(|e| Error::Io(format!("{}: {e}", d.display())))?;
    }
    let first = std::fs::read_dir(&sdir)
        .map_err(|e| Error::Io(format!("{}: {e}", sdir.display())))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sbatch"))
        })
        .count();
    let max = max_array_size();
    for (k, (offset, indices)) in slurm::blocks(&pending, max).into_iter().enumerate() {
        let path = sdir.join(format!("array-{:03}.sbatch", first + k));
        let text = slurm::script(&collapse, &root, &indices, offset, &o);
        collapse_kernels::io::write_atomic(&path, text.as_bytes())?;
        print!("{}: {} jobs", path.display(), indices.len());
        if a.submit {
            let out = Command::new("sbatch")
                .arg("--parsable")
                .arg(&path)
                .output()
                .map_err(|e| Error::Io(format!("sbatch: {e} (is Slurm installed and on PATH?)")))?;
            if !out.status.success() {
                println!();
                return Err(Error::Io(format!(
                    "sbatch {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let id = String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(';')
                .next()
                .unwrap_or("")
                .to_string();
            let rec = sdir.join("submitted.csv");
            let new = !rec.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rec)
                .map_err(|e| Error::Io(format!("{}: {e}", rec.display())))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if new {
                writeln!(f, "unix_time,job_id,script,jobs")
                    .map_err(|e| Error::Io(format!("{}: {e}", rec.display())))?;
            }
            writeln!(
                f,
                "{now},{id},{},{}",
                path.display(),
                slurm::array_spec(&indices, 0, 0).replace(',', " ")
            )
            .map_err(|e| Error::Io(format!("{}: {e}", rec.display())))?;
            print!(", submitted as job {id}");
        }
        println!();
    }
    Ok(())
}

fn status_cmd(a: &StatusArgs) -> Result<()> {
    let root = &a.dir;
    let m = Manifest::read(root)?;
    let states = status::states(root, &m);
    let (done, running, failed, partial, pending) = status::counts(&states);
    if a.json {
        let jobs: Vec<serde_json::Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut v = serde_json::json!({"job": i, "state": s.word()});
                match s {
                    JobState::Failed(e) => v["error"] = e.clone().into(),
                    JobState::Running(h) => v["holder"] = h.clone().into(),
                    _ => {}
                }
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"jobs": m.jobs.len(), "done": done, "running": running,
                "failed": failed, "partial": partial, "pending": pending, "states": jobs})
        );
        return Ok(());
    }
    println!(
        "{}: {} jobs: {done} done, {running} running, {failed} failed, {partial} partial \
         (resumable), {pending} pending",
        root.display(),
        m.jobs.len()
    );
    let failures: Vec<usize> = (0..states.len())
        .filter(|&i| matches!(states[i], JobState::Failed(_)))
        .collect();
    print_failures(root, &m, &failures);
    Ok(())
}

/// The files `collect` writes: the long table, the summary, the dictionary.
fn collect_paths(a: &CollectArgs) -> (PathBuf, PathBuf, PathBuf) {
    let long = a.out.clone().unwrap_or_else(|| a.dir.join("collected.csv"));
    let stem = long
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "collected".into());
    let parent = long.parent().map(Path::to_path_buf).unwrap_or_default();
    (
        long.clone(),
        parent.join(format!("{stem}_summary.csv")),
        parent.join("metrics_dictionary.csv"),
    )
}

fn collect_cmd(a: &CollectArgs) -> Result<()> {
    let m = Manifest::read(&a.dir)?;
    let (long, summary, dict) = collect_paths(a);
    if a.out.is_some() {
        collapse_kernels::io::output::refuse_overwrite(
            &[long.clone(), summary.clone()]
                .into_iter()
                .filter(|p| p.exists())
                .collect::<Vec<_>>(),
            a.force,
            &format!("--out {}", long.display()),
        )?;
    }
    let group_by = a
        .group_by
        .clone()
        .unwrap_or_else(|| collect::default_group_by(&m));
    let mut buf: Vec<u8> = Vec::new();
    let c: Collected = collect::collect(&a.dir, &m, &group_by, Some(&mut buf))?;
    collapse_kernels::io::write_atomic(&long, &buf)?;
    collapse_kernels::io::write_atomic(&summary, collect::summary_csv(&c)?.as_bytes())?;
    write_dictionary(&dict)?;
    println!(
        "collected {} of {} jobs ({} rows){}: {}, {}, {}",
        c.jobs_done,
        m.jobs.len(),
        c.rows,
        if c.jobs_missing > 0 {
            format!(" — {} jobs not done are left out", c.jobs_missing)
        } else {
            String::new()
        },
        long.display(),
        summary.display(),
        dict.display()
    );
    Ok(())
}

/// Every metric's definition, as CSV.
fn write_dictionary(path: &Path) -> Result<()> {
    collapse_kernels::experiment::write_dictionary_csv(path)
}
