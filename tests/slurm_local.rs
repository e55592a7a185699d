//! The local Slurm cluster (`scripts/slurm-local.sh`, through `common::slurm`) runs job arrays:
//! every task of a throttled array runs once with its own `SLURM_ARRAY_TASK_ID`, never more at
//! once than the throttle allows, and `scancel` of one task stops it and leaves the others. Skipped
//! (with a message) when the cluster cannot start here; failed under `CI=true`. The cluster stays
//! running afterwards (`scripts/slurm-local.sh stop` stops it).

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

/// Writes an executable batch script `name` into `dir` and returns its path as a string.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/bash\nset -eu\n{body}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn a_throttled_array_runs_every_task_once_at_most_two_at_a_time() {
    let Some(c) = common::slurm::cluster() else {
        return;
    };
    let dir = common::tmpdir("array");
    let d = dir.display();
    // Each task records its job id, task id and its start and end times (ns), and lasts 0.3 s so
    // that tasks run past the throttle would overlap.
    let job_sh = script(
        &dir,
        "job.sh",
        &format!(
            "t0=$(date +%s%N); sleep 0.3; t1=$(date +%s%N)\n\
             echo \"$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $t0 $t1\" > {d}/task-$SLURM_ARRAY_TASK_ID.tmp\n\
             mv {d}/task-$SLURM_ARRAY_TASK_ID.tmp {d}/task-$SLURM_ARRAY_TASK_ID"
        ),
    );
    let out = format!("{d}/%A_%a.out");
    let dir_s = dir.to_str().unwrap();
    let job = c.sbatch([
        "--array=0-5%2",
        "-D",
        dir_s,
        "-o",
        &out,
        "-J",
        "smoke",
        &job_sh,
    ]);
    c.wait_done(&job, Duration::from_secs(60));

    let mut spans = Vec::new();
    for task in 0..6 {
        let f = dir.join(format!("task-{task}"));
        let line = fs::read_to_string(&f).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; states {:?}, task log: {:?}",
                f.display(),
                c.states(&job),
                fs::read_to_string(dir.join(format!("{job}_{task}.out")))
            )
        });
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w.len(), 4, "{}: {line:?}", f.display());
        assert_eq!(w[0], job, "{}: SLURM_ARRAY_JOB_ID", f.display());
        assert_eq!(
            w[1],
            task.to_string(),
            "{}: SLURM_ARRAY_TASK_ID",
            f.display()
        );
        let (t0, t1): (u128, u128) = (w[2].parse().unwrap(), w[3].parse().unwrap());
        assert!(t0 < t1, "{}: {line:?}", f.display());
        spans.push((t0, t1));
    }
    // No file beyond the six tasks.
    assert!(!dir.join("task-6").exists());
    // The %2 throttle: at every task's start, at most two tasks (itself included) are running.
    for &(s, _) in &spans {
        let live = spans.iter().filter(|&&(a, b)| a <= s && s < b).count();
        assert!(live <= 2, "{live} tasks ran at once under %2: {spans:?}");
    }
    let states = c.states(&job);
    for task in 0..6 {
        let id = format!("{job}_{task}");
        assert_eq!(
            states.get(&id).map(String::as_str),
            Some("COMPLETED"),
            "{id}: {states:?}"
        );
    }
}

#[test]
fn scancel_of_one_sleeping_task_stops_it_and_spares_the_others() {
    let Some(c) = common::slurm::cluster() else {
        return;
    };
    let dir = common::tmpdir("cancel");
    let d = dir.display();
    // Task 1 sleeps long enough to be cancelled while it sleeps; the others end quickly.
    let job_sh = script(
        &dir,
        "job.sh",
        &format!(
            "echo started > {d}/started-$SLURM_ARRAY_TASK_ID\n\
             if [ \"$SLURM_ARRAY_TASK_ID\" = 1 ]; then sleep 120; fi\n\
             echo $SLURM_ARRAY_TASK_ID > {d}/task-$SLURM_ARRAY_TASK_ID"
        ),
    );
    let out = format!("{d}/%A_%a.out");
    let dir_s = dir.to_str().unwrap();
    let job = c.sbatch([
        "--array=0-2",
        "-D",
        dir_s,
        "-o",
        &out,
        "-J",
        "cancel",
        &job_sh,
    ]);
    let victim = format!("{job}_1");
    c.wait_state(&victim, "RUNNING", Duration::from_secs(30));
    // RUNNING is set when the task is launched; wait until its script sleeps.
    let started = dir.join("started-1");
    for _ in 0..150 {
        if started.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started.exists(),
        "{victim} is RUNNING but its script never started"
    );
    c.scancel(&victim);
    c.wait_done(&victim, Duration::from_secs(20));
    c.wait_done(&job, Duration::from_secs(60));

    assert!(
        !dir.join("task-1").exists(),
        "the cancelled task ran to its end"
    );
    for task in [0, 2] {
        let f = dir.join(format!("task-{task}"));
        let s = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(s.trim(), task.to_string(), "{}", f.display());
    }
    let states = c.states(&job);
    assert_eq!(
        states.get(&victim).map(String::as_str),
        Some("CANCELLED"),
        "{states:?}"
    );
    for task in [0, 2] {
        let id = format!("{job}_{task}");
        assert_eq!(
            states.get(&id).map(String::as_str),
            Some("COMPLETED"),
            "{id}: {states:?}"
        );
    }
}
