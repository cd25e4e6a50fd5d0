"""Iterative training: collect with C, fine-tune M on everything seen, train C again; repeat.

    python iterate.py --run results/carracing --rounds 10 --train-in dream

Ha & Schmidhuber's appendix procedure, on a run that has been through stages 01–03 (V, and M on the first,
exploratory collection). Round 0 trains C on that M. Each round r ≥ 1 then:
1. collects ``--episodes-per-round`` episodes with the current C (Gaussian noise ``--noise`` on its outputs) into
   the data folder, as round r (``01_collect.py --policy controller``);
2. measures M's NLL on a quarter of those new episodes, held out, then fine-tunes M for ``--finetune-epochs`` on
   all the other data (the first collection's episodes and every round's), and measures it again;
3. encodes the new episodes with V into latents.h5 (the old ones are kept: V does not change);
4. trains C: ``--generations`` CMA-ES generations from the last C, in M's dream (``--train-in dream``: every
   fitness C ever sees comes from M), in the real env, or both (first the dream, then the env);
5. scores C on ``--score-episodes`` real episodes of selection seeds, and plays the first ``--calibration-episodes``
   of them again in M's dream from the same first frame: the dream's return against the real one is how much M
   flatters C.

Each round writes one row to metrics/rounds.csv: real env steps so far (the first collection included) and dream
steps; M's NLL on the round's episodes before and after fine-tuning; the calibration (dream and real return of
the same C from the same starts); C's dream and real return. plots/rounds.png shows them against rounds and real
env steps, and ``05_dream.py`` puts them in report.html.

Kill it anywhere: the same command resumes (the round's collection is completed, M's fine-tuning resumes from
its last epoch, CMA-ES from its last generation). Every round's C is kept as rounds/controller_<r>.pt; the
run's controller.pt is the last round's.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import time
from pathlib import Path

import cma
import numpy as np
import torch

from data import latents as latent_data
from data.atomic import write_bytes
from data.frames import split
from data.store import RolloutStore, index_hash, read_episode
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, sample_z, to_input
from pipeline.collect import CollectJob, collect
from pipeline.contract import checkpoint, cli, lock
from pipeline.contract.cli import Parser, nonneg_float, parse_stage_args, positive_float, positive_int, stage_parser
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text, load_config, save_stage_config
from pipeline.contract.seeding import Purpose, cma_normal, episode_seeds
from pipeline.controller_policy import controller_files
from pipeline.dream_env import DreamEvaluator, controller_actor, dream, record_real_episode
from pipeline.encoder_precision import PRECISIONS, Precision, prepare
from pipeline.evolution import Evaluator
from pipeline.reporting import plots
from pipeline.reporting.metrics import CsvLog
from pipeline.reporting.progress import write as progress_write
from pipeline.training import epoch_plan, mdn_step, mdn_validate
from pipeline.world_model import WorldModel

COLUMNS = ["round", "real_env_steps", "dream_steps", "new_episodes", "nll_new_before", "nll_new_after",
           "calibration_dream", "calibration_real", "c_dream_return", "c_real_return", "c_real_std", "seconds"]
ROUND_INDEX = 100_000  # seeds of round r use index ROUND_INDEX + r, apart from stage 04's generations


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=cli.positive_int_up_to(999), default=10, help="rounds in total (round 0 included)")
    p.add_argument("--episodes-per-round", type=cli.episodes, default=16, help="real episodes C collects each round")
    p.add_argument("--noise", type=nonneg_float, default=0.1, help="σ of the Gaussian noise on C's outputs when collecting")
    p.add_argument("--finetune-epochs", type=positive_int, default=5, help="M's epochs over all the data each round")
    p.add_argument("--lr", type=cli.learning_rate, default=1e-3, help="M's Adam learning rate when fine-tuning")
    p.add_argument("--batch", type=positive_int, default=16, help="M's sequences per batch")
    p.add_argument("--seq-len", type=cli.steps, default=100, help="M's steps per training sequence")
    p.add_argument("--reward-over-weight", type=positive_float,
                   help="weight of M's reward errors that over-predict, when fine-tuning (default: M's own, from 03)")
    p.add_argument("--train-in", choices=["dream", "env", "both"], default="dream",
                   help="where C's fitness comes from: M's dream, the real env, or the dream then the env")
    p.add_argument("--generations", type=positive_int, default=20, help="CMA-ES generations per round (each place)")
    p.add_argument("--pop", type=cli.episodes, default=32, help="CMA-ES population size")
    p.add_argument("--trials", type=cli.episodes, default=16, help="episodes per candidate (dream or env)")
    p.add_argument("--sigma", type=positive_float, default=0.1, help="CMA-ES step size at the start of each round")
    p.add_argument("--init-from", type=Path, metavar="CONTROLLER",
                   help="round 0's C: this controller.pt, evolved on this run's V and M (checked), instead of one CMA-ES "
                        "evolves from 0 in round 0; the loop then improves a trained C")
    p.add_argument("--dream-steps", type=cli.steps, default=300, help="cap on a dream episode's length")
    p.add_argument("--temperature", type=positive_float, default=1.15, help="τ of M's sampling in the dream")
    p.add_argument("--reward-penalty", type=nonneg_float, default=0.0,
                   help="the dream pays M's mean reward less this times the spread of its reward heads (M trained "
                        "with 03 --reward-heads E > 1)")
    p.add_argument("--steps", type=cli.steps, help="cap on a real episode's length (default: the env's)")
    p.add_argument("--patience", type=cli.nonneg_int_up_to(cli.MAX_STEPS), default=100,
                   help="--train-in env/both: stop a training episode that earned nothing for this many steps")
    p.add_argument("--score-episodes", type=cli.episodes, default=8, help="real selection episodes scoring C each round")
    p.add_argument("--calibration-episodes", type=cli.episodes, default=4,
                   help="of those, how many are dreamed again from their first frame (M's calibration)")
    p.add_argument("--workers", type=cli.workers, default=os.cpu_count(), help="real-env worker processes")
    p.add_argument("--v-precision", choices=PRECISIONS, default="fp32", metavar="P",
                   help="V's encoder wherever C plays the real env (collection, training in the env, scoring): fp32 (V "
                        "as trained), bf16, or int8 (ONNX Runtime, calibrated on the run's frames, cached in "
                        "<run>/vae_int8.onnx); M's calibration replays its episodes with V in fp32")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "iterate", argv)
    args.steps = args.steps or args.source.default_max_steps
    if args.calibration_episodes > args.score_episodes:
        p.error(f"argument --calibration-episodes: at most --score-episodes ({args.score_episodes})")
    return args


def run(args: argparse.Namespace) -> None:
    """The rounds, in --run and --data, which this process holds throughout."""
    # One thread, as stage 04's process: M's fine-tuning is small, and OpenMP threads spinning against the real-env
    # workers on the same cores cost far more than they give. The dreams take the workers' cores while they wait.
    torch.set_num_threads(1)
    with lock.hold(args.run, "--run"), lock.hold(args.data, "--data"):
        Rounds(args).run()


class Rounds:
    def __init__(self, args: argparse.Namespace):
        self.args, self.run_dir = args, args.run
        for name, stage in (("vae.pt", "02_train_vae.py"), ("mdnrnn.pt", "03_train_mdnrnn.py")):
            if not (self.run_dir / name).exists():
                raise UsageError(f"{self.run_dir / name} is missing: run {stage} on this run first")
        self.folder = self.run_dir / "rounds"
        self.folder.mkdir(exist_ok=True)
        self.state_path = self.folder / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else \
            {"round": 0, "phase": "train", "dream_steps": 0, "score_steps": 0}
        self.config = load_config(self.run_dir)
        self.vae_state = checkpoint.load(self.run_dir / "vae.pt", "02_train_vae.py")
        self.log = CsvLog(self.run_dir / "metrics" / "rounds.csv", COLUMNS, key="round",
                          resume_after=self.state["round"] - (self.state["phase"] != "done"))

    def save_state(self, **changes) -> None:
        self.state.update(changes)
        atomic_write_text(self.state_path, json.dumps(self.state, indent=2))

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        args = self.args
        save_stage_config(self.run_dir, "iterate", args)
        while True:
            r, phase = self.state["round"], self.state["phase"]
            if phase == "done":
                if r + 1 >= args.rounds:
                    break
                self.save_state(round=r + 1, phase="collect", row={})
                continue
            start = time.monotonic()
            row = dict(self.state.get("row", {}))
            if phase == "collect":
                row["new_episodes"] = self.collect(r)
                self.save_state(phase="finetune", row=row)
            elif phase == "finetune":
                row.update(self.finetune(r))
                self.save_state(phase="train", row=row)
            elif phase == "train":
                row["c_dream_return"] = self.train_controller(r)
                self.save_state(phase="score", row=row)
            elif phase == "score":
                row.update(self.score(r))
                row["round"] = r
                row["real_env_steps"] = self.real_steps()
                row["dream_steps"] = self.state["dream_steps"]
                row["seconds"] = row.get("seconds", 0.0) + time.monotonic() - start
                self.log.write(**{k: row.get(k, float("nan")) for k in COLUMNS})
                self.plot()
                progress_write(f"round {r}: C real {row['c_real_return']:.1f} ± {row['c_real_std']:.1f}, dream "
                               f"{row['c_dream_return']:.1f}; M flatters C by "
                               f"{row['calibration_dream'] - row['calibration_real']:+.1f} "
                               f"({row['real_env_steps']:,} real env steps, {row['dream_steps']:,} dream steps)")
                self.save_state(phase="done", row=row)
                continue
            row["seconds"] = row.get("seconds", 0.0) + time.monotonic() - start
            self.save_state(row=row)
        print(f"{args.rounds} round(s) done: {self.run_dir / 'metrics' / 'rounds.csv'}, {self.run_dir / 'controller.pt'}")

    # -- 1. collect ----------------------------------------------------------------------------
    def collect(self, r: int) -> int:
        args = self.args
        job = CollectJob(env=args.env, state=args.state, data=str(args.data), seed=self.collect_seed(), policy="controller",
                         max_steps=self.collect_steps(), shard_size=100, round=r,
                         controller=controller_files(self.run_dir), noise=args.noise, v_precision=self.precision)
        present, added = collect(job, args.episodes_per_round, args.workers, progress=True)
        return present + added

    def collect_seed(self) -> int:
        return int(self.config.get("collect", {}).get("seed", self.args.seed))

    def collect_steps(self) -> int:
        """The first collection's episode cap: one folder holds one cap."""
        return int(self.config.get("collect", {}).get("steps", self.args.steps))

    def real_steps(self) -> int:
        """Real env steps so far: every stored episode's, plus the scorings'."""
        return sum(ref.length for ref in RolloutStore(self.args.data).index()) + int(self.state["score_steps"])

    # -- 2, 3. M -------------------------------------------------------------------------------
    def latents(self) -> list[latent_data.LatentEpisode]:
        """Every stored episode encoded by V: latents.h5 extended with the episodes it lacks (V is unchanged)."""
        args, path = self.args, self.run_dir / "latents.h5"
        store = RolloutStore(args.data)
        refs = store.index()
        fingerprint = checkpoint.weights_hash(self.vae_state["model"])
        attrs = latent_data.read_attrs(path)
        have = latent_data.read(path) if attrs.get("vae_fingerprint") == fingerprint else []
        known = {e.id for e in have}
        missing = [ref for ref in refs if ref.id not in known]
        if not missing:
            return [e for e in have if e.id in {ref.id for ref in refs}]
        vae = ConvVAE.from_state(self.vae_state).eval()

        @torch.no_grad()
        def encode(ref) -> latent_data.LatentEpisode:
            ep = read_episode(ref)
            frames = torch.from_numpy(ep.observations)
            parts = [vae.encode(to_input(frames[s: s + 500])) for s in range(0, len(frames), 500)]
            mu, logvar = (torch.cat(x).float().numpy() for x in zip(*parts))
            return latent_data.LatentEpisode(ep.id, mu, logvar, args.source.encode_actions(ep.actions), ep.rewards,
                                             ep.terminations)

        episodes = {e.id: e for e in have}
        episodes.update({ref.id: encode(ref) for ref in missing})
        ordered = [episodes[ref.id] for ref in refs]
        latent_data.write(path, iter(ordered), {"vae_fingerprint": fingerprint,
                                                "dataset": index_hash(refs, store.attrs()),
                                                "episode_ids": np.array([ref.id for ref in refs]), "z_dim": vae.z_dim})
        return ordered

    def m_settings(self) -> dict:
        m = self.config.get("mdnrnn", {})
        over = self.args.reward_over_weight or float(m.get("reward_over_weight", 1.0))
        done = m.get("done_weight_used", m.get("done_weight", 10.0))  # 03 records what "balanced" came to
        return {"done_weight": float(done), "reward_over_weight": over,
                "grad_clip": float(m.get("grad_clip", 1.0))}

    def finetune(self, r: int) -> dict:
        args, settings = self.args, self.m_settings()
        episodes = self.latents()
        refs = RolloutStore(args.data).index()
        # Held out of training: stage 03's validation episodes, and a quarter of this round's, on which M's NLL is
        # measured before and after fine-tuning (what M learned of C's behaviour, not what it memorised).
        _, validation = split(refs, 0.05)
        _, new_held = split([ref for ref in refs if ref.round == r], 0.25)
        held = {ref.id for ref in validation} | {ref.id for ref in new_held}
        new = [e for e in episodes if e.id in {ref.id for ref in new_held}]
        state = checkpoint.load(self.run_dir / "mdnrnn.pt", "03_train_mdnrnn.py")
        model = MDNRNN.from_state(state)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        progress = state.get("round_progress", {})
        if progress.get("round") == r:  # resumed inside this round's fine-tuning
            opt.load_state_dict(state["optimizer"])
        else:
            progress = {"round": r, "epoch": 0}
        device = torch.device("cpu")

        def nll() -> float:
            return mdn_validate(model, new, args.seq_len, args.batch, device, settings["done_weight"], args.seed,
                                settings["reward_over_weight"])["nll"] if new else float("nan")

        before = self.state.get("row", {}).get("nll_new_before")
        if before is None or progress["epoch"] == 0:
            before = nll()
            self.save_state(row={**self.state.get("row", {}), "nll_new_before": before})
        train_eps = [e for e in episodes if e.id not in held]
        for epoch in range(progress["epoch"], args.finetune_epochs):
            rng, batches = epoch_plan(train_eps, args.seq_len, args.batch, args.seed, ROUND_INDEX * r + epoch)
            for picks in batches:
                mdn_step(model, opt, latent_data.batch(train_eps, picks, args.seq_len, rng), device,
                         settings["grad_clip"], settings["done_weight"], settings["reward_over_weight"])
            progress["epoch"] = epoch + 1
            progress_write(f"round {r} M fine-tuning epoch {epoch + 1}/{args.finetune_epochs}")
            # Whatever else stage 03 recorded (its progress, V's fingerprint, the data it saw) is kept as it was.
            checkpoint.save(self.run_dir / "mdnrnn.pt", {**state, **model.state(), "optimizer": opt.state_dict(),
                                                         "round_progress": dict(progress)})
        return {"nll_new_before": before, "nll_new_after": nll()}

    # -- 4. C ----------------------------------------------------------------------------------
    def world(self) -> WorldModel:
        return WorldModel.load(self.run_dir, self.args.env, self.args.state)

    def previous_params(self, r: int, dim: int) -> np.ndarray:
        path = self.folder / f"controller_{r - 1}.pt"
        return checkpoint.load(path, "iterate.py")["params"].numpy().astype(np.float64) if r > 0 else np.zeros(dim)

    @functools.cached_property
    def precision(self) -> Precision:
        """V's encoder in the real-env workers (--v-precision), made once: int8's model is calibrated on the run's
        frames the first time, then read from the run."""
        args = self.args
        return prepare(args.v_precision, self.run_dir, args.data, args.env, self.collect_seed(), self.collect_steps())

    def evaluator(self) -> Evaluator:
        args = self.args
        return Evaluator(self.run_dir, args.env, args.state, args.steps, args.workers, precision=self.precision)

    def train_controller(self, r: int) -> float:
        args = self.args
        world = self.world()
        if r == 0 and args.init_from is not None:  # checked before any other work, so a wrong file is refused at once
            params = world.load_controller(args.init_from, "--init-from")["params"].numpy().astype(np.float32)
            self.save_controller(r, world, params, f"{args.init_from}, given as round 0's C (--init-from)", 0)
            return float("nan")
        self.latents()  # dreams start from every stored episode's frames, the newest round's included
        places = {"dream": ["dream"], "env": ["env"], "both": ["dream", "env"]}[args.train_in]
        es_path = self.folder / f"es_{r}.pkl"
        if es_path.exists():
            saved = pickle.loads(es_path.read_bytes())
        else:
            es = cma.CMAEvolutionStrategy(self.previous_params(r, world.num_params), args.sigma,
                                          {"popsize": args.pop, "seed": np.nan, "randn": cma_normal(args.seed + r),
                                           "verbose": -9, "CMA_mirrors": 0})
            saved = {"es": es, "done": 0, "dream_return": float("nan")}
        es = saved["es"]
        total = args.generations * len(places)
        dreamer = DreamEvaluator(world, self.run_dir / "latents.h5", args.dream_steps, args.temperature,
                                 torch.device("cpu"), threads=min(args.workers, os.cpu_count() or 1),
                                 reward_penalty=args.reward_penalty) if "dream" in places else None
        evaluator = self.evaluator() if "env" in places else None
        try:
            while saved["done"] < total:
                g = saved["done"]
                place = places[g // args.generations]
                seeds = episode_seeds(args.seed, Purpose.TRIALS, ROUND_INDEX * (r + 1) + g, args.trials)
                candidates = np.asarray(es.ask())
                if place == "dream":
                    fitness, steps = dreamer.fitness(candidates, seeds)
                    self.state["dream_steps"] += int(steps)
                    saved["dream_return"] = float(np.mean(fitness))
                else:
                    fitness, steps = evaluator.fitness(candidates, seeds, args.patience)
                    self.state["score_steps"] += int(steps)
                es.tell(list(candidates), list(-fitness))
                saved["done"] = g + 1
                write_bytes(es_path, pickle.dumps(saved))
                self.save_state()
                progress_write(f"round {r} C generation {g + 1}/{total} ({place}): mean {np.mean(fitness):.1f}, "
                               f"best {np.max(fitness):.1f}")
        finally:
            if evaluator is not None:
                evaluator.close()
        params = np.asarray(es.mean, dtype=np.float32)
        if dreamer is not None:  # C's dream return: the final mean on fresh dream starts
            seeds = episode_seeds(args.seed, Purpose.SELECTION, ROUND_INDEX + r, args.trials * 4)
            returns, steps = dreamer.scores(params, seeds)
            self.state["dream_steps"] += int(steps)
            dream_return = float(returns.mean())
        else:
            dream_return = float("nan")
        self.save_controller(r, world, params, f"CMA mean after round {r} of iterate.py", saved["done"])
        return dream_return

    def save_controller(self, r: int, world: WorldModel, params: np.ndarray, params_from: str, generations: int) -> None:
        """Round r's C, as rounds/controller_<r>.pt and as the run's controller.pt."""
        ckpt = {"config": {"in_dim": world.controller_in, "out_dim": world.controller_out},
                "params": torch.from_numpy(params), "params_from": params_from,
                "score_mean": float("nan"), "score_std": float("nan"), "generation": generations,
                "mean": torch.from_numpy(params), "best_candidate": torch.from_numpy(params),
                "best_candidate_fitness": float("nan"), "trained_in": self.args.train_in,
                "world": world.fingerprint()}
        checkpoint.save(self.folder / f"controller_{r}.pt", ckpt)
        checkpoint.save(self.run_dir / "controller.pt", ckpt)

    # -- 5. score ------------------------------------------------------------------------------
    def score(self, r: int) -> dict:
        args = self.args
        world = self.world()
        params = checkpoint.load(self.folder / f"controller_{r}.pt", "iterate.py")["params"].numpy()
        seeds = episode_seeds(args.seed, Purpose.SELECTION, ROUND_INDEX + r, args.score_episodes)
        with self.evaluator() as evaluator:
            returns, steps = evaluator.scores(params, seeds, max(1, args.score_episodes // args.workers))
        self.state["score_steps"] += int(steps)
        dreamed, real = [], []
        actor = controller_actor(world, torch.from_numpy(params)[None])
        for seed in seeds[: args.calibration_episodes]:
            episode = record_real_episode(world, actor, seed, args.steps)
            self.state["score_steps"] += len(episode.actions)
            real.append(float(episode.rewards.sum()))
            dreamed.append(self.dream_from(world, params, episode.frames[0], seed, len(episode.actions)))
        self.save_state()
        return {"c_real_return": float(returns.mean()), "c_real_std": float(returns.std()),
                "calibration_dream": float(np.mean(dreamed)), "calibration_real": float(np.mean(real))}

    @torch.no_grad()
    def dream_from(self, world: WorldModel, params: np.ndarray, frame: np.ndarray, seed: int, steps: int) -> float:
        """C's return in M's dream from a real first frame (z_0 sampled from V's code of it), for ``steps`` steps."""
        mu, logvar = world.vae.encode(to_input(torch.from_numpy(frame[None])))
        generator = torch.Generator().manual_seed(int(seed))
        z0 = sample_z(mu, logvar, torch.randn(mu.shape, generator=generator))
        result = dream(world.mdnrnn, world.source, z0, world.mdnrnn.initial_state(1),
                       controller_actor(world, torch.from_numpy(params)[None]), steps, self.args.temperature, generator,
                       reward_penalty=self.args.reward_penalty)
        self.state["dream_steps"] += result.steps
        return float(result.returns[0])

    # -- the figure ----------------------------------------------------------------------------
    def plot(self) -> None:
        plots.rounds(self.run_dir / "metrics" / "rounds.csv", self.run_dir / "plots" / "rounds.png")
