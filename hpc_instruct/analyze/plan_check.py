"""Testing the planner's predictions the way the data-mixture literature tests them.

The planner predicts a mix's score per ability from the curated growth curves of one model (allocation.py: the
curve at the ability's count, the base model's score at 0) and overall as the mean over abilities. Those curves
are fitted on the study's curated arms only (curves.py never reads mix or held-out trials), so every mix trial
is an out-of-sample test of them:

- held-out mixes (source 'held_out': random per-ability volumes drawn by a seed, `sweep.held_out`): Spearman's
  rho between predicted and measured overall scores across the mixes (RegMix), pairwise decision accuracy, the
  share of mix pairs that prediction orders as measurement does (DataDecide), and the per-ability mean absolute
  error. Next to each, the ceiling that training-seed noise allows: how well a predictor that knew the true
  scores would do against the seed mean that is measured, estimated from how single seeds agree with each other
  (`_seed_ceiling`). With one seed there is no ceiling to show.
- named mixes (source 'mix'): predicted vs measured per arm; where the recipe states the planner's predictions
  (`sweep.mixes[].predicted`, written by `hpci plan-data --write`) those are shown as well, and the measured
  difference plan - uniform (and plan - reconstruct) carries its 95% interval, so "the plan beats uniform" is
  measured rather than only predicted.

Measured intervals (normal, 95%): the paired item bootstrap of the seed mean plus the seed variance / seeds.
The prediction models each ability's own count only: synthetic samples in a mix and transfer between abilities
are not in it, so a mix with synthetic data is predicted as if it had none (its error says what they add).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from hpc_instruct.analyze.allocation import predictor
from hpc_instruct.analyze.curves import Curve
from hpc_instruct.analyze.selection import OVERALL

Z95 = 1.959963984540054
MIX_SOURCES = ("mix", "held_out")
PLAN_ARMS = ("plan", "uniform", "reconstruct")  # the arms `hpci plan-data --write` names mix-<arm>-<budget>


@dataclass(frozen=True)
class PlanCheck:
    arms: pd.DataFrame  # per (model, arm): source, seeds, measured (+lo/hi), predicted, stated, error
    per_ability: pd.DataFrame  # per (model, arm, ability): measured, predicted, stated, error
    held_out: pd.DataFrame  # per model: mixes, spearman (+lo/hi), decision_accuracy, ceilings, mae
    ability_error: pd.DataFrame  # per (model, ability) over held-out mixes: mae, bias, seed_sd
    contrasts: pd.DataFrame  # per model: plan - uniform / plan - reconstruct, measured (+lo/hi) and predicted

    @property
    def empty(self) -> bool:
        return self.arms.empty

    def headline(self) -> pd.Series | None:
        """The held-out summary of the model with the most held-out mixes (None without any)."""
        if self.held_out.empty:
            return None
        return self.held_out.sort_values(["mixes", "model"]).iloc[-1]


def check_plan(
    reported: pd.DataFrame,
    curves: Mapping[tuple[str, str, str], Curve],
    abilities: tuple[str, ...],
    stated: Mapping[str, Mapping[str, float]] | None = None,
    replicates: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PlanCheck:
    """Predicted vs measured for every mix and held-out trial. `stated`: arm label -> {ability or 'overall':
    predicted accuracy} from the recipe; `replicates` as in `curves.fit_curves`."""
    stated = stated or {}
    rows = reported[reported["source"].isin(MIX_SOURCES) & reported["ability"].isin(abilities + (OVERALL,))]
    base = reported[(reported["source"] == "base") & reported["ability"].isin(abilities)]
    base_of = {(m, a): float(v) for m, a, v in zip(base["model"], base["ability"], base["accuracy"], strict=True)}
    per_ability, arms = [], []
    for (model, arm), g in rows.groupby(["model", "arm"], sort=True):
        predict = {
            a: predictor(curves[(a, "curated", model)], base_of.get((model, a)))
            for a in abilities
            if (a, "curated", model) in curves
        }
        said = stated.get(arm, {})
        preds = []
        for ability in abilities:
            cell = g[g["ability"] == ability]
            if cell.empty:
                continue
            count = int(cell["samples"].iloc[0])
            pred = predict[ability](count) if ability in predict else math.nan
            preds.append(pred)
            per_ability.append(
                {"model": model, "arm": arm, "source": cell["source"].iloc[0], "ability": ability,
                 "samples": count, **_measured(cell, replicates), "predicted": pred,
                 "stated": float(said.get(ability, math.nan))}
            )
        overall = g[g["ability"] == OVERALL]
        if overall.empty:
            continue
        predicted = float(np.mean(preds)) if len(preds) == len(abilities) else math.nan
        arms.append(
            {"model": model, "arm": arm, "source": overall["source"].iloc[0],
             "total_samples": int(overall["total_samples"].iloc[0]), **_measured(overall, replicates),
             "predicted": predicted, "stated": float(said.get(OVERALL, math.nan))}
        )
    arm_table = pd.DataFrame(arms, columns=ARM_COLUMNS)
    arm_table["error"] = arm_table["predicted"] - arm_table["measured"]
    ability_table = pd.DataFrame(per_ability, columns=ABILITY_COLUMNS)
    ability_table["error"] = ability_table["predicted"] - ability_table["measured"]
    held = rows[rows["source"] == "held_out"]
    return PlanCheck(
        arm_table,
        ability_table,
        _held_out_summary(arm_table, held),
        _ability_errors(ability_table),
        _contrasts(rows, arm_table, replicates),
    )


ARM_COLUMNS = ["model", "arm", "source", "total_samples", "seeds", "measured", "measured_lo", "measured_hi",
               "seed_sd", "predicted", "stated"]
ABILITY_COLUMNS = ["model", "arm", "source", "ability", "samples", "seeds", "measured", "measured_lo",
                   "measured_hi", "seed_sd", "predicted", "stated"]


def _measured(g: pd.DataFrame, replicates) -> dict:
    """Seed mean with a 95% interval: item bootstrap of the mean plus the seed variance / seeds."""
    k = len(g)
    mean = float(g["accuracy"].mean())
    seed_var = float(g["accuracy"].var(ddof=1)) if k > 1 else 0.0
    if replicates is not None:
        rep = replicates(g["row"].to_numpy()).mean(axis=0)
        item_var = float(np.var(rep, ddof=1)) if rep.size > 1 else 0.0
    else:
        item_var = float(np.mean(np.square(g["accuracy_se"]))) / k
    se = math.sqrt(item_var + seed_var / k)
    return {"seeds": k, "measured": mean, "measured_lo": mean - Z95 * se, "measured_hi": mean + Z95 * se,
            "seed_sd": math.sqrt(seed_var)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def decision_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Share of pairs (i, j) that x and y order the same way (ties in y are left out, ties in x count half)."""
    agree, pairs = 0.0, 0
    for i, j in combinations(range(len(x)), 2):
        if y[i] == y[j]:
            continue
        pairs += 1
        agree += 0.5 if x[i] == x[j] else float((x[i] - x[j]) * (y[i] - y[j]) > 0)
    return agree / pairs if pairs else math.nan


def _held_out_summary(arms: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    out = []
    for model, g in arms[arms["source"] == "held_out"].groupby("model", sort=True):
        g = g.dropna(subset=["predicted"])
        pred, meas = g["predicted"].to_numpy(float), g["measured"].to_numpy(float)
        lo, hi = _bootstrap_rho(pred, meas)
        ceiling_rho, ceiling_acc = _seed_ceiling(held[(held["model"] == model) & (held["ability"] == OVERALL)])
        out.append(
            {"model": model, "mixes": len(g), "spearman": spearman(pred, meas), "spearman_lo": lo,
             "spearman_hi": hi, "decision_accuracy": decision_accuracy(pred, meas),
             "ceiling_spearman": ceiling_rho, "ceiling_decision_accuracy": ceiling_acc,
             "mae": float(np.mean(np.abs(pred - meas))) if len(g) else math.nan,
             "seed_sd": float(g["seed_sd"].mean()) if len(g) else math.nan}
        )
    return pd.DataFrame(out, columns=["model", "mixes", "spearman", "spearman_lo", "spearman_hi",
                                      "decision_accuracy", "ceiling_spearman", "ceiling_decision_accuracy",
                                      "mae", "seed_sd"])


def _bootstrap_rho(pred: np.ndarray, meas: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of Spearman's rho, resampling mixes."""
    if len(pred) < 4:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pred), (n_boot, len(pred)))
    rhos = [spearman(pred[i], meas[i]) for i in idx]
    rhos = np.array([r for r in rhos if math.isfinite(r)])
    if len(rhos) < n_boot // 2:
        return math.nan, math.nan
    return float(np.quantile(rhos, 0.025)), float(np.quantile(rhos, 0.975))


def _seed_ceiling(overall: pd.DataFrame) -> tuple[float, float]:
    """(rho, decision accuracy) that a perfect predictor of the true scores would reach against the mean of the
    study's k seeds, estimated from how well single seeds agree with each other.

    Between two seeds (averaged over seed pairs) the agreement is one seed's reliability r; the mean of k seeds
    has reliability k r / (1 + (k - 1) r) (Spearman-Brown), and the truth correlates with that mean at its
    square root. Decision accuracy goes the same way through Kendall's tau under normal noise (tau =
    2/pi asin(r), accuracy = (1 + tau) / 2). Rank statistics are treated as correlations: an approximation, good
    to a few hundredths, and six mixes carry far wider intervals than that."""
    wide = overall.pivot_table(index="arm", columns="seed", values="accuracy").dropna()
    k = wide.shape[1]
    if k < 2 or len(wide) < 3:
        return math.nan, math.nan
    pairs = [(wide[a].to_numpy(float), wide[b].to_numpy(float)) for a, b in combinations(wide.columns, 2)]
    rho = float(np.nanmean([spearman(x, y) for x, y in pairs]))
    tau = 2 * float(np.nanmean([decision_accuracy(x, y) for x, y in pairs])) - 1
    of_mean_rho = _truth_vs_mean(rho, k)
    of_mean_tau = 2 / math.pi * math.asin(_truth_vs_mean(math.sin(math.pi / 2 * tau), k))
    return of_mean_rho, (1 + of_mean_tau) / 2


def _truth_vs_mean(r: float, k: int) -> float:
    """Correlation of the truth with the mean of k measurements that correlate r with each other."""
    r = max(r, 0.0)
    return math.sqrt(k * r / (1 + (k - 1) * r)) if math.isfinite(r) else math.nan


def _ability_errors(table: pd.DataFrame) -> pd.DataFrame:
    held = table[table["source"] == "held_out"].dropna(subset=["predicted"])
    out = (
        held.groupby(["model", "ability"], sort=True)
        .agg(mixes=("arm", "nunique"), mae=("error", lambda e: float(np.mean(np.abs(e)))),
             bias=("error", "mean"), seed_sd=("seed_sd", "mean"))
        .reset_index()
    )
    return out


def _contrasts(rows: pd.DataFrame, arms: pd.DataFrame, replicates) -> pd.DataFrame:
    """Measured and predicted plan - uniform and plan - reconstruct per model, for arms named mix-<arm>-<N>."""
    out = []
    named = arms[arms["source"] == "mix"].copy()
    named["kind"] = named["arm"].str.extract(r"^mix-(plan|uniform|reconstruct)-\d+$")[0]
    overall = rows[rows["ability"] == OVERALL]
    for model, g in named.dropna(subset=["kind"]).groupby("model", sort=True):
        by_kind = g.set_index("kind")
        if "plan" not in by_kind.index:
            continue
        plan = by_kind.loc["plan"]
        for other in ("uniform", "reconstruct"):
            if other not in by_kind.index:
                continue
            o = by_kind.loc[other]
            a = overall[(overall["model"] == model) & (overall["arm"] == plan["arm"])]
            b = overall[(overall["model"] == model) & (overall["arm"] == o["arm"])]
            diff = float(a["accuracy"].mean() - b["accuracy"].mean())
            seed_var = sum(float(x["accuracy"].var(ddof=1)) / len(x) for x in (a, b) if len(x) > 1)
            if replicates is not None:
                d = replicates(a["row"].to_numpy()).mean(axis=0) - replicates(b["row"].to_numpy()).mean(axis=0)
                item_var = float(np.var(d, ddof=1)) if d.size > 1 else 0.0
            else:
                item_var = float(np.mean(np.square(a["accuracy_se"])) + np.mean(np.square(b["accuracy_se"])))
            se = math.sqrt(item_var + seed_var)
            out.append(
                {"model": model, "contrast": f"plan - {other}", "measured": diff, "measured_lo": diff - Z95 * se,
                 "measured_hi": diff + Z95 * se, "predicted": float(plan["predicted"] - o["predicted"]),
                 "stated": float(plan["stated"] - o["stated"])}
            )
    return pd.DataFrame(out, columns=["model", "contrast", "measured", "measured_lo", "measured_hi", "predicted",
                                      "stated"])


def stated_predictions(study_dir) -> dict[str, dict[str, float]]:
    """Arm label -> the predictions a recipe states for it (`sweep.mixes[].predicted`), from the resolved
    study.yaml; empty when there is none or it cannot be read (the comparison then shows fitted predictions)."""
    from pathlib import Path

    import yaml

    from hpc_instruct.study_dir import StudyDir

    recipe = StudyDir(Path(study_dir)).recipe
    if not recipe.is_file():
        return {}
    try:
        tree = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}
    out = {}
    for mix in (tree.get("sweep") or {}).get("mixes") or []:
        said = mix.get("predicted") if isinstance(mix, dict) else None
        if said and isinstance(mix.get("name"), str):
            name = mix["name"] if mix["name"].startswith("mix") else f"mix-{mix['name']}"
            out[name] = {str(k): float(v) for k, v in said.items()}
    return out
