//! The byte-level transformer on a checkable task in the generational loop (`collapse run
//! --model task --task add:3 --verifier oracle`): Feng et al.'s pruning and Llama 3.1's
//! execution feedback in miniature.
//!
//! # Generations
//!
//! Generation 0 trains on `--samples` real (problem, true answer) pairs of its replicate
//! (Philox stream `TASK` of the replicate at generation 0). Generation `n` poses `--samples`
//! fresh problems from the real distribution (stream `TASK` of the replicate at generation `n`:
//! the synthetic set's stream with the `TASK` purpose), lets generation `n − 1` answer them
//! (sampled at `--lm-temperature`, `--lm-top-k`; `--best-of K` candidates per round, round `a`
//! from sub-stream `a` of the set's `SYNTHETIC` stream), and keeps the answers its verifier
//! accepts ([`super::verifier`]). The policies pool as for every model: `replace` (the kept
//! answers), `accumulate` (the real pairs and every generation's kept answers), `mix:F` (F of
//! `--samples` real pairs drawn from the replicate's real set, the rest posed problems),
//! `fresh:F` (F new real pairs, their problems at counter offset 2³² of the `REAL` stream... see
//! [`TaskModel::fresh_real`]). A generation trains from scratch or from generation 0's weights
//! (`--lm-init`) for `--lm-steps` AdamW steps of `--lm-batch` pool rows, the loss on the answer
//! bytes and their end byte only; a generation whose verifier kept nothing trains on nothing
//! (its weights are its starting weights).
//!
//! # Rows
//!
//! A pool row is `[sequence bytes (L)] [answer length] [correct] [rounds] [problem values]`
//! (f64): the sequence `prompt ‖ answer ‖ END` padded to `L = sequence_len` bytes, whether the
//! oracle calls the answer correct (1/0: measured whatever the verifier, because the truth is
//! known), the sampling rounds it took, and the problem's integers.
//!
//! # Metrics (columns after the pool's)
//!
//! - `heldout_accuracy`: the fraction of a fixed set of `--task-eval` held-out problems (stream
//!   `HELD_OUT`, the same every generation and replicate) the model answers correctly, decoding
//!   greedily.
//! - `answer_loss`: mean cross-entropy of the true answers of those problems (nats per answer
//!   byte, the end byte included).
//! - `pool_label_error`: the fraction of the training pool's rows whose answer is wrong (real
//!   pairs are right).
//! - `kept_fraction`: of the problems posed to generation `n − 1`, the fraction whose answer was
//!   kept (NaN at generation 0; under `accumulate` and `mix:F`, of the newest set).
//! - `verifier_precision`, `verifier_recall`: of the judged candidates of the newest set, the
//!   fraction of kept ones that are correct, and of correct ones that were kept (NaN when
//!   undefined).
//! - `mean_attempts`: sampling rounds per posed problem (1 without `--retries`).
//!
//! # Audit files
//!
//! `pools/gNNNN-rR.tsv` (`problem`, `answer`, `correct`, `source`, `rounds`: the training pool of
//! generation N of replicate R, `source` as in `pool_composition`) and `eval/gNNNN-rR.tsv`
//! (`problem`, `prediction`, `truth`, `correct`: its greedy answers to the held-out problems),
//! problems and answers human-readable (`add`: `123+456` and `579`; `eigen`: the matrix as a
//! JSON array of rows, the eigenvalues as a JSON array; malformed answers as escaped bytes).

use super::checkpoint::{Checkpoint, RunState};
use super::config::{LmInit, Policy, RunConfig, TaskRunConfig, Truth};
use super::data::{RealData, pick_row};
use super::lm::LmModel;
use super::model::{MetricContext, Model};
use super::pool::Generator;
use super::verifier::{TaskVerifier, VerifyStats};
use super::weights::{self, Weights};
use crate::error::{Error, Result};
use crate::io::{Matrix, write_atomic};
use crate::models::lm::complete::{Completion, complete};
use crate::models::lm::init_params;
use crate::rng::streams::{LM_BATCH, chunk_stream, purpose, stream_id};
use crate::rng::{StreamKey, unit_f64};
use crate::tasks::{END, Problem, Task, draw};
use crate::trainers::Engine;

/// The task model's columns of `metrics.csv`.
pub const METRIC_COLUMNS: [&str; 7] = [
    "heldout_accuracy",
    "answer_loss",
    "pool_label_error",
    "kept_fraction",
    "verifier_precision",
    "verifier_recall",
    "mean_attempts",
];

/// The most `--best-of` candidates and `--retries` rounds (each round is a sub-stream).
pub const MAX_BEST_OF: usize = 64;
/// See [`MAX_BEST_OF`].
pub const MAX_RETRIES: usize = 64;

/// Counter offset of `fresh:F`'s problems in the replicate's `REAL` stream (its generation-0
/// pairs start at 0).
const FRESH_OFFSET: u64 = 1 << 32;

pub use super::config::task_row_width as row_width;

/// The stream `stream` with its purpose field replaced by `p` (the same replicate and
/// generation).
fn with_purpose(stream: u64, p: u64) -> u64 {
    use crate::rng::streams::PURPOSE_SHIFT;
    (stream & ((1u64 << PURPOSE_SHIFT) - 1)) | (p << PURPOSE_SHIFT)
}

/// One problem's outcome: the kept candidate (or `None`), the oracle's verdict on it, the
/// sampling rounds used.
type Answer = (Option<Completion>, bool, usize);

/// One generation's trained model on a task.
#[derive(Clone, Debug)]
pub struct TaskModel {
    /// The network and its weights (the LM of [`super::lm`]).
    pub lm: LmModel,
    /// The task settings of the run.
    pub settings: TaskRunConfig,
}

/// A pool row's parts.
struct Row<'a> {
    seq: &'a [f64],
    answer_len: usize,
    correct: bool,
    rounds: usize,
    values: Vec<i64>,
}

fn split_row<'a>(task: &dyn Task, row: &'a [f64]) -> Row<'a> {
    let l = task.sequence_len();
    Row {
        seq: &row[..l],
        answer_len: row[l] as usize,
        correct: row[l + 1] != 0.0,
        rounds: row[l + 2] as usize,
        values: row[l + 3..].iter().map(|v| *v as i64).collect(),
    }
}

fn make_row(task: &dyn Task, p: &Problem, answer: &[u8], correct: bool, rounds: usize) -> Vec<f64> {
    let mut row: Vec<f64> = task.sequence(p, answer).iter().map(|&b| b as f64).collect();
    row.push(answer.len() as f64);
    row.push(if correct { 1.0 } else { 0.0 });
    row.push(rounds as f64);
    row.extend(p.values.iter().map(|&v| v as f64));
    row
}

/// Rows of true answers to `problems`.
fn true_rows(task: &dyn Task, problems: &[Problem]) -> Result<Matrix> {
    let w = row_width(task);
    let data = problems
        .iter()
        .flat_map(|p| make_row(task, p, &task.answer(p), true, 0))
        .collect();
    Matrix::new(problems.len(), w, data)
}

fn task_of(cfg: &RunConfig) -> Result<(TaskRunConfig, Box<dyn Task>)> {
    let s = cfg.task.clone().ok_or_else(|| {
        Error::InvalidArgument("--model task needs --task (add:N or eigen:N)".into())
    })?;
    let t = s.parsed()?;
    Ok((s, t))
}

impl TaskModel {
    fn task(&self) -> Box<dyn Task> {
        self.settings
            .parsed()
            .expect("checked when the run started")
    }

    /// Answers to `problems`: per problem the candidate the verifier kept (or `None`), its
    /// rounds, and the counts (see [`super::verifier`]).
    fn answer(
        &self,
        backend: &Engine,
        task: &dyn Task,
        problems: &[Problem],
        key: StreamKey,
    ) -> Result<(Vec<Answer>, VerifyStats)> {
        let s = &self.settings;
        let k = s.best_of.max(1);
        let lm = self.lm.on(backend)?;
        let rounds = if s.verifier.rejects_single_answers() {
            1 + s.retries
        } else {
            1
        };
        let flips = StreamKey::new(key.seed, with_purpose(key.stream, purpose::VERIFIER));
        let count = problems.len();
        // Per problem: the kept candidate, its oracle verdict, rounds used.
        let mut out: Vec<Answer> = vec![(None, false, 0); count];
        let mut stats = VerifyStats {
            problems: count,
            ..Default::default()
        };
        let mut pending: Vec<usize> = (0..count).collect();
        let sampling = self.lm.sampling;
        for a in 0..rounds {
            if pending.is_empty() {
                break;
            }
            let prompts: Vec<Vec<u8>> = pending
                .iter()
                .flat_map(|&i| std::iter::repeat_n(task.prompt(&problems[i]), k))
                .collect();
            let sub = StreamKey::new(key.seed, chunk_stream(key.stream, a as u64));
            let done = complete(
                lm.as_ref(),
                backend,
                &prompts,
                task.max_answer() + 1,
                END,
                Some(&sampling),
                sub,
            )?;
            let mut still = Vec::new();
            for (j, &i) in pending.iter().enumerate() {
                out[i].2 = a + 1;
                let cands = &done[j * k..(j + 1) * k];
                let correct = |c: &Completion| c.ended && task.is_correct(&problems[i], &c.bytes);
                match s.verifier {
                    TaskVerifier::None => {
                        let c = &cands[0];
                        let ok = correct(c);
                        if ok {
                            stats.kept_correct += 1;
                        } else {
                            stats.kept_wrong += 1;
                        }
                        out[i] = (Some(c.clone()), ok, 1);
                    }
                    TaskVerifier::Confidence(_) => {
                        let mut best = 0;
                        for (c, cand) in cands.iter().enumerate() {
                            if cand.log_prob > cands[best].log_prob {
                                best = c;
                            }
                        }
                        out[i] = (Some(cands[best].clone()), correct(&cands[best]), 1);
                    }
                    TaskVerifier::Oracle | TaskVerifier::Noisy(_) => {
                        let mut kept = false;
                        for (c, cand) in cands.iter().enumerate() {
                            let ok = correct(cand);
                            let accept = match s.verifier {
                                TaskVerifier::Noisy(p) => {
                                    let w = ((a * count + i) * k + c) as u64;
                                    ok != (unit_f64(flips.u32_at(w)) < p)
                                }
                                _ => ok,
                            };
                            match (accept, ok) {
                                (true, true) => stats.kept_correct += 1,
                                (true, false) => stats.kept_wrong += 1,
                                (false, true) => stats.rejected_correct += 1,
                                (false, false) => stats.rejected_wrong += 1,
                            }
                            if accept {
                                out[i] = (Some(cand.clone()), ok, a + 1);
                                kept = true;
                                break;
                            }
                        }
                        if !kept {
                            still.push(i);
                        }
                    }
                }
            }
            pending = still;
        }
        if let TaskVerifier::Confidence(f) = s.verifier {
            // Keep the fraction f of the problems with the likeliest answers (ties: the earlier
            // problem).
            let keep = ((f * count as f64).round() as usize).min(count);
            let mut order: Vec<usize> = (0..count).collect();
            order.sort_by(|&x, &y| {
                let lp = |i: usize| out[i].0.as_ref().map_or(f64::NEG_INFINITY, |c| c.log_prob);
                lp(y).total_cmp(&lp(x)).then(x.cmp(&y))
            });
            for (rank, &i) in order.iter().enumerate() {
                let ok = out[i].1;
                match (rank < keep, ok) {
                    (true, true) => stats.kept_correct += 1,
                    (true, false) => stats.kept_wrong += 1,
                    (false, true) => stats.rejected_correct += 1,
                    (false, false) => stats.rejected_wrong += 1,
                }
                if rank >= keep {
                    out[i].0 = None;
                }
            }
        }
        stats.kept = out.iter().filter(|o| o.0.is_some()).count();
        stats.rounds = out.iter().map(|o| o.2).sum();
        Ok((out, stats))
    }
}

impl Generator for TaskModel {
    fn generate(&self, backend: &Engine, count: usize, key: StreamKey) -> Result<Matrix> {
        Ok(self.generate_verified(backend, count, key)?.0)
    }

    /// Pose `count` problems (stream `key` with the `TASK` purpose), answer them and keep what
    /// the verifier accepts: the kept rows (in problem order) and the counts.
    fn generate_verified(
        &self,
        backend: &Engine,
        count: usize,
        key: StreamKey,
    ) -> Result<(Matrix, Option<VerifyStats>)> {
        let task = self.task();
        let problems = draw(
            task.as_ref(),
            StreamKey::new(key.seed, with_purpose(key.stream, purpose::TASK)),
            0,
            count,
        );
        let (answers, stats) = self.answer(backend, task.as_ref(), &problems, key)?;
        let mut data = Vec::new();
        let mut rows = 0;
        for (p, (c, ok, rounds)) in problems.iter().zip(&answers) {
            if let Some(c) = c {
                // An answer that never reached the end byte is wrong (the oracle saw it
                // unended); its row keeps the first max_answer bytes, so rows stay one width.
                let bytes = &c.bytes[..c.bytes.len().min(task.max_answer())];
                data.extend(make_row(task.as_ref(), p, bytes, *ok, *rounds));
                rows += 1;
            }
        }
        Ok((
            Matrix::new(rows, row_width(task.as_ref()), data)?,
            Some(stats),
        ))
    }

    fn score(&self, _backend: &Engine, _x: &Matrix) -> Result<Vec<f64>> {
        Err(Error::InvalidArgument(
            "--model task verifies with --verifier, not --policy verify:MODE:F".into(),
        ))
    }

    /// New real pairs for `fresh:F`: problems from counter offset 2³² of stream `key` (the
    /// replicate's `REAL` stream at the generation; its generation-0 pairs start at 0) with
    /// their true answers.
    fn fresh_real(&self, count: usize, key: StreamKey) -> Option<Result<Matrix>> {
        let task = self.task();
        let problems = draw(task.as_ref(), key, FRESH_OFFSET, count);
        Some(true_rows(task.as_ref(), &problems))
    }
}

impl Weights for TaskModel {
    fn weights(&self) -> &[f64] {
        &self.lm.params
    }

    fn from_weights(cfg: &RunConfig, real: &RealData, params: Vec<f64>) -> Result<Self> {
        let (settings, _) = task_of(cfg)?;
        Ok(Self {
            lm: LmModel::from_weights(cfg, real, params)?,
            settings,
        })
    }
}

impl Model for TaskModel {
    type Setup = ();

    fn check(cfg: &RunConfig) -> Result<()> {
        let (s, task) = task_of(cfg)?;
        cfg.lm.check()?;
        if matches!(cfg.policy, Policy::Verify(..)) {
            return Err(Error::InvalidArgument(
                "--model task verifies with --verifier (none, oracle, noisy:P, confidence:F), \
                 not --policy verify:MODE:F"
                    .into(),
            ));
        }
        if !matches!(&cfg.truth, Truth::Builtin(n) if n == "task") {
            return Err(Error::InvalidArgument(
                "--model task draws its own problems: no --truth or --data".into(),
            ));
        }
        if cfg.real_rows.is_some() {
            return Err(Error::InvalidArgument(
                "--real-rows does not apply to --model task (generation 0 trains on --samples \
                 real pairs)"
                    .into(),
            ));
        }
        if !(1..=MAX_BEST_OF).contains(&s.best_of) {
            return Err(Error::InvalidArgument(format!(
                "--best-of must be in 1..={MAX_BEST_OF}, got {}",
                s.best_of
            )));
        }
        if s.retries > MAX_RETRIES {
            return Err(Error::InvalidArgument(format!(
                "--retries must be at most {MAX_RETRIES}, got {}",
                s.retries
            )));
        }
        if s.retries > 0 && !s.verifier.rejects_single_answers() {
            return Err(Error::InvalidArgument(format!(
                "--retries resamples answers the verifier rejects: it needs --verifier oracle or \
                 noisy:P, not {}",
                s.verifier
            )));
        }
        if s.eval == 0 {
            return Err(Error::InvalidArgument(
                "--task-eval must be at least 1".into(),
            ));
        }
        let need = task.sequence_len() - 1;
        if cfg.lm.context < need {
            return Err(Error::InvalidArgument(format!(
                "--task {} needs --lm-context of at least {need} (its sequences are {} bytes), \
                 got {}",
                s.task,
                task.sequence_len(),
                cfg.lm.context
            )));
        }
        Ok(())
    }

    fn load_real(cfg: &RunConfig, _cpu: &Engine) -> Result<RealData> {
        let (s, task) = task_of(cfg)?;
        let t = task.as_ref();
        let train = (0..cfg.replicates)
            .map(|r| {
                let key = StreamKey::new(
                    cfg.seed,
                    stream_id(purpose::TASK, cfg.replicate_index(r), 0),
                );
                true_rows(t, &draw(t, key, 0, cfg.samples))
            })
            .collect::<Result<Vec<_>>>()?;
        let held = draw(
            t,
            StreamKey::new(cfg.seed, stream_id(purpose::HELD_OUT, 0, 0)),
            0,
            s.eval,
        );
        Ok(RealData {
            train,
            all_train: None,
            held_out: true_rows(t, &held)?,
            truth: None,
            held_out_model: None,
        })
    }

    fn columns(_cfg: &RunConfig, _d: usize) -> Vec<String> {
        METRIC_COLUMNS.iter().map(|c| c.to_string()).collect()
    }

    fn fit(
        backend: &Engine,
        cfg: &RunConfig,
        pool: &Matrix,
        seed: u64,
        gen0: Option<&Self>,
    ) -> Result<Self> {
        let (settings, task) = task_of(cfg)?;
        let t = task.as_ref();
        let rc = &cfg.lm;
        let net = rc.network();
        let start = match (rc.init, gen0) {
            (LmInit::Gen0, Some(g)) => g.lm.params.clone(),
            _ => init_params(&net, seed),
        };
        let params = if pool.rows == 0 {
            start
        } else {
            let mut lm = backend.lm(&net, &start)?;
            let l = t.sequence_len();
            let len = l - 1;
            let mut tokens = Vec::with_capacity(rc.batch * l);
            let mut mask = Vec::with_capacity(rc.batch * len);
            for step in 0..rc.steps {
                let key = StreamKey::new(seed, LM_BATCH + step as u64);
                tokens.clear();
                mask.clear();
                for b in 0..rc.batch {
                    let row = split_row(t, pool.row(pick_row(key, b, pool.rows)));
                    tokens.extend(row.seq.iter().map(|&v| v as u8));
                    mask.extend(t.answer_mask(row.answer_len));
                }
                lm.step_masked(&tokens, &mask, len)?;
            }
            lm.last_loss()?;
            lm.params()?
        };
        Ok(Self {
            lm: LmModel {
                cfg: net,
                params,
                sampling: rc.sampling(),
            },
            settings,
        })
    }

    fn held_out_verifier(
        _cpu: &Engine,
        _cfg: &RunConfig,
        _real: &RealData,
        _seed: u64,
    ) -> Result<Self> {
        Err(Error::InvalidArgument(
            "--model task has no held-out likelihood verifier; use --verifier".into(),
        ))
    }

    fn setup(_cfg: &RunConfig, _real: &RealData, _cpu: &Engine) -> Result<()> {
        Ok(())
    }

    fn metrics(&self, ctx: &MetricContext<'_>, _setup: &()) -> Result<Vec<String>> {
        let task = self.task();
        let t = task.as_ref();
        let ho = &ctx.real.held_out;
        let problems: Vec<Problem> = (0..ho.rows)
            .map(|i| Problem {
                values: split_row(t, ho.row(i)).values,
            })
            .collect();
        // Greedy answers to the held-out problems.
        let mut lm = self.lm.on(ctx.backend)?;
        let prompts: Vec<Vec<u8>> = problems.iter().map(|p| t.prompt(p)).collect();
        let answers = complete(
            lm.as_ref(),
            ctx.backend,
            &prompts,
            t.max_answer() + 1,
            END,
            None,
            StreamKey::new(0, 0),
        )?;
        let mut eval = String::from("problem\tprediction\ttruth\tcorrect\n");
        let mut right = 0usize;
        for (p, a) in problems.iter().zip(&answers) {
            let ok = a.ended && t.is_correct(p, &a.bytes);
            right += usize::from(ok);
            eval.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                t.problem_text(p),
                t.answer_text(p, &a.bytes),
                t.answer_text(p, &t.answer(p)),
                u8::from(ok)
            ));
        }
        let accuracy = right as f64 / problems.len() as f64;
        // Loss of the true answers.
        let l = t.sequence_len();
        let mut tokens = Vec::with_capacity(ho.rows * l);
        let mut mask = Vec::with_capacity(ho.rows * (l - 1));
        for i in 0..ho.rows {
            let row = split_row(t, ho.row(i));
            tokens.extend(row.seq.iter().map(|&v| v as u8));
            mask.extend(t.answer_mask(row.answer_len));
        }
        let val_loss = lm.loss_masked(&tokens, &mask, l - 1)?;
        // The pool: label error and the audit file.
        let pool = &ctx.pool;
        let mut sources = Vec::with_capacity(pool.x.rows);
        for (origin, count) in &pool.composition {
            sources.extend(std::iter::repeat_n(origin.as_str(), *count));
        }
        let mut audit = String::from("problem\tanswer\tcorrect\tsource\trounds\n");
        let mut wrong = 0usize;
        for i in 0..pool.x.rows {
            let row = split_row(t, pool.x.row(i));
            let p = Problem { values: row.values };
            let start = t.max_prompt();
            let answer: Vec<u8> = row.seq[start..start + row.answer_len]
                .iter()
                .map(|&v| v as u8)
                .collect();
            wrong += usize::from(!row.correct);
            audit.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                t.problem_text(&p),
                t.answer_text(&p, &answer),
                u8::from(row.correct),
                sources.get(i).copied().unwrap_or("?"),
                row.rounds
            ));
        }
        let label_error = wrong as f64 / pool.x.rows.max(1) as f64;
        let name = format!(
            "g{:04}-r{}.tsv",
            ctx.generation,
            ctx.cfg.replicate_index(ctx.replicate)
        );
        for (sub, text) in [("pools", &audit), ("eval", &eval)] {
            let dir = ctx.dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            write_atomic(&dir.join(&name), text.as_bytes())?;
        }
        let v = pool.verify.unwrap_or_default();
        let nan_if_gen0 = |x: f64| if pool.verify.is_some() { x } else { f64::NAN };
        Ok([
            accuracy,
            val_loss,
            if pool.x.rows == 0 {
                f64::NAN
            } else {
                label_error
            },
            nan_if_gen0(v.kept_fraction()),
            nan_if_gen0(v.precision()),
            nan_if_gen0(v.recall()),
            nan_if_gen0(v.mean_attempts()),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect())
    }

    fn load_history(
        ck: &mut Checkpoint,
        state: &mut RunState,
        real: &RealData,
    ) -> Result<Vec<Vec<Self>>> {
        weights::load_weight_history(ck, state, real)
    }

    fn save_generation(
        ck: &mut Checkpoint,
        state: &mut RunState,
        n: usize,
        models: &[&Self],
    ) -> Result<()> {
        weights::save_weight_generation(ck, state, n, models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;
    use crate::models::lm::LmConfig;

    /// An untrained model on `task` with `verifier` (its answers are almost all wrong).
    fn untrained(task: &str, verifier: TaskVerifier, best_of: usize) -> TaskModel {
        let net = LmConfig {
            width: 16,
            layers: 1,
            heads: 2,
            context: 16,
            adam: Default::default(),
        };
        TaskModel {
            lm: LmModel {
                params: init_params(&net, 5),
                cfg: net,
                sampling: Default::default(),
            },
            settings: TaskRunConfig {
                task: task.into(),
                verifier,
                best_of,
                ..Default::default()
            },
        }
    }

    /// `noisy:P` flips the oracle's verdict on a fraction of the judged candidates within a
    /// binomial bound (4 standard deviations) of P; `noisy:0` keeps exactly what `oracle` keeps.
    #[test]
    fn noisy_flips_at_rate_p_and_noisy_zero_is_the_oracle() {
        let cpu = Engine::create(BackendKind::Cpu32, None).unwrap();
        let key = StreamKey::new(3, stream_id(purpose::SYNTHETIC, 0, 1));
        let problems = draw(
            crate::tasks::parse("add:1", 0.05).unwrap().as_ref(),
            StreamKey::new(3, 9),
            0,
            1500,
        );
        let t = crate::tasks::parse("add:1", 0.05).unwrap();
        for p in [0.1, 0.3] {
            let m = untrained("add:1", TaskVerifier::Noisy(p), 2);
            let (_, s) = m.answer(&cpu, t.as_ref(), &problems, key).unwrap();
            let judged = s.judged() as f64;
            assert!(judged >= 1500.0, "{s:?}");
            let flips = (s.kept_wrong + s.rejected_correct) as f64;
            let bound = 4.0 * (p * (1.0 - p) / judged).sqrt();
            assert!((flips / judged - p).abs() < bound, "P {p}: {s:?}");
        }
        let oracle = untrained("add:1", TaskVerifier::Oracle, 2);
        let zero = untrained("add:1", TaskVerifier::Noisy(0.0), 2);
        let (a, sa) = oracle.answer(&cpu, t.as_ref(), &problems, key).unwrap();
        let (b, sb) = zero.answer(&cpu, t.as_ref(), &problems, key).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(sa.kept_wrong, 0, "the oracle kept a wrong answer");
        for ((x, okx, rx), (y, oky, ry)) in a.iter().zip(&b) {
            assert_eq!((x, okx, rx), (y, oky, ry));
            if x.is_some() {
                assert!(*okx);
            }
        }
    }

    /// An untrained model's answers mostly never reach the end byte: with `none` every
    /// problem still gives one row of the pool's width, marked wrong when unended.
    #[test]
    fn unended_answers_keep_the_row_width() {
        let cpu = Engine::create(BackendKind::Cpu32, None).unwrap();
        let m = untrained("add:2", TaskVerifier::None, 1);
        let t = m.task();
        let key = StreamKey::new(2, stream_id(purpose::SYNTHETIC, 0, 1));
        let (x, s) = m.generate_verified(&cpu, 300, key).unwrap();
        let s = s.unwrap();
        assert_eq!((x.rows, x.cols), (300, row_width(t.as_ref())));
        assert_eq!(s.kept, 300);
        let wrong = (0..x.rows).filter(|&i| !split_row(t.as_ref(), x.row(i)).correct);
        assert_eq!(wrong.count(), s.kept_wrong);
        assert!(s.kept_wrong > 250, "{s:?}");
    }

    /// `confidence:F` keeps the fraction F of the problems, those with the likeliest answers.
    #[test]
    fn confidence_keeps_the_likeliest_fraction() {
        let cpu = Engine::create(BackendKind::Cpu32, None).unwrap();
        let t = crate::tasks::parse("add:2", 0.05).unwrap();
        let problems = draw(t.as_ref(), StreamKey::new(1, 1), 0, 200);
        let m = untrained("add:2", TaskVerifier::Confidence(0.25), 3);
        let (out, s) = m
            .answer(&cpu, t.as_ref(), &problems, StreamKey::new(1, 2))
            .unwrap();
        assert_eq!(s.kept, 50);
        let lp = |o: &Answer| o.0.as_ref().map(|c| c.log_prob);
        let kept: Vec<f64> = out.iter().filter_map(lp).collect();
        assert_eq!(kept.len(), 50);
        assert_eq!(s.judged(), 200);
        assert_eq!(s.rounds, 200);
        // F = 1 keeps every problem's likeliest candidate (the same draws): the kept quarter
        // is its 50 likeliest.
        let all = untrained("add:2", TaskVerifier::Confidence(1.0), 3);
        let (every, _) = all
            .answer(&cpu, t.as_ref(), &problems, StreamKey::new(1, 2))
            .unwrap();
        let mut lps: Vec<f64> = every.iter().filter_map(lp).collect();
        assert_eq!(lps.len(), 200);
        lps.sort_by(|a, b| b.total_cmp(a));
        let threshold = lps[49];
        for (o, e) in out.iter().zip(&every) {
            match &o.0 {
                Some(c) => {
                    assert_eq!(Some(c), e.0.as_ref());
                    assert!(c.log_prob >= threshold);
                }
                None => assert!(lp(e).unwrap() <= threshold),
            }
        }
    }
}
