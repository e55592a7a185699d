//! `collapse sweep slurm` against a real one-node Slurm (`scripts/slurm-local.sh`, started by
//! `common::slurm::cluster`; under `CI=true` a cluster that cannot start fails the test): the
//! issue's 12-job sweep submitted as an array throttled to 4, one task cancelled with scancel
//! while the sweep runs, `status` showing it, a resubmission running only the missing jobs,
//! and the collected tables byte-identical to a local `sweep run` of the same spec.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{collapse, ok};
use common::tmpdir;

/// 2 policies × 2 sample sizes × 3 seeds of the Gaussian chain; long enough (a few hundred
/// ms each) that the throttled array is still running when a task is cancelled.
const SPEC: &str = r#"
[base]
model = "gaussian"
generations = 300
replicates = 4
backend = "cpu64"
[axes]
policy = ["replace", "accumulate"]
samples = [20, 200]
seed = { count = 3 }
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_sweep_runs_as_a_slurm_array_and_a_resubmit_runs_only_missing_jobs() {
    let Some(c) = common::slurm::cluster() else {
        return;
    };
    let t = tmpdir("sweep-slurm");
    std::fs::create_dir_all(&t).unwrap();
    let spec = t.join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let (local, remote) = (t.join("local"), t.join("slurm"));
    ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&local)]));
    ok(&collapse(["sweep", "plan", s(&spec), "--out", s(&remote)]));

    let submit = |what: &str| -> (String, String) {
        let out = c
            .command(env!("CARGO_BIN_EXE_collapse"))
            .args([
                "sweep",
                "slurm",
                s(&remote),
                "--array-limit",
                "4",
                "--time",
                "00:10:00",
                "--submit",
            ])
            .output()
            .unwrap();
        let stdout = ok(&out);
        let id = stdout
            .split("submitted as job ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("{what}: no job id in {stdout}"))
            .to_string();
        let script = stdout.split(':').next().unwrap().trim().to_string();
        (id, std::fs::read_to_string(&script).unwrap())
    };
    let (id, script) = submit("first submission");
    assert!(script.contains("#SBATCH --array=0-11%4\n"), "{script}");
    assert!(script.contains("#SBATCH --requeue\n"), "{script}");
    assert!(
        script.contains(&format!("exec '{}'", env!("CARGO_BIN_EXE_collapse"))),
        "{script}"
    );
    // Cancel the last task while the throttled array works through the first ones.
    let last = format!("{id}_11");
    c.scancel(&last);
    c.wait_done(&id, Duration::from_secs(240));
    let st = ok(&collapse(["sweep", "status", s(&remote)]));
    assert!(st.contains("11 done") && st.contains("1 pending"), "{st}");

    // The resubmission holds only job 11.
    let (id2, script2) = submit("resubmission");
    assert!(script2.contains("#SBATCH --array=11%4\n"), "{script2}");
    c.wait_done(&id2, Duration::from_secs(120));
    let st = ok(&collapse(["sweep", "status", s(&remote)]));
    assert!(st.contains("12 done"), "{st}");
    let rec = std::fs::read_to_string(remote.join("slurm/submitted.csv")).unwrap();
    assert_eq!(rec.lines().count(), 3, "{rec}");
    // Nothing left: a third call submits nothing.
    let none = c
        .command(env!("CARGO_BIN_EXE_collapse"))
        .args(["sweep", "slurm", s(&remote), "--submit"])
        .output()
        .unwrap();
    assert!(ok(&none).contains("nothing to submit"));

    ok(&collapse(["sweep", "run", s(&local)]));
    ok(&collapse(["sweep", "collect", s(&local)]));
    ok(&collapse(["sweep", "collect", s(&remote)]));
    for f in ["collected.csv", "collected_summary.csv"] {
        assert_eq!(
            std::fs::read(local.join(f)).unwrap(),
            std::fs::read(remote.join(f)).unwrap(),
            "{f}: the Slurm sweep differs from the local one"
        );
    }
}
