"""Consistency checks that no single field can express: parallel layouts against model shapes, batch
arithmetic, sweep references, requested volumes against pool sizes. Every problem is recorded, not just the first.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from hpc_instruct.data.abilities import OUT_OF_DOMAIN, REGISTRY
from hpc_instruct.errors import Problem
from hpc_instruct.recipe.data_facts import DataFacts
from hpc_instruct.recipe.schema import Recipe
from hpc_instruct.recipe.source import KeyPath, Tree, format_path
from hpc_instruct.train.config import ModelConfig, PretrainConfig
from hpc_instruct.train.presets import PRESETS, ModelShape, preset

# The corpus the demo generator writes (`hpc_instruct.data.demo.study.PRETRAIN_FILE`, not imported: planning stays
# light; a test keeps the two equal).
PRETRAIN_FILE = PretrainConfig.__dataclass_fields__["corpus"].default
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Checker:
    def __init__(self, recipe: Recipe, tree: Tree):
        self.recipe = recipe
        self.tree = tree
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def problem(self, path: KeyPath, message: str, suggestion: str = "") -> None:
        self.problems.append(Problem(self.tree.where(path), format_path(path), message, suggestion))

    # -- study -------------------------------------------------------------------------------------------
    def study(self) -> None:
        """The study name becomes a folder under output_root: a plain name, never a path (`../x`, `/x`, `.`)."""
        name = self.recipe.study.name
        if not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
            plain = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
            self.problem(("study", "name"), f"expected a plain name ([A-Za-z0-9][A-Za-z0-9._-]*), got {name!r}",
                         f"e.g. {plain!r}; put the folder in output_root" if plain else "e.g. 'my-study'")

    # -- models --------------------------------------------------------------------------------------------
    def models(self) -> dict[str, ModelShape]:
        shapes: dict[str, ModelShape] = {}
        seen: dict[str, int] = {}
        for i, m in enumerate(self.recipe.models):
            at: KeyPath = ("models", i)
            if m.name in seen:
                self.problem(at + ("name",), f"duplicate model name {m.name!r} (also models[{seen[m.name]}])")
            seen[m.name] = i
            shape = self.shape(m, at)
            if shape is not None:
                shapes[m.name] = shape
                self.layout(m, shape, at)
            if m.pretrain is not None:
                self.pretrain(m, at + ("pretrain",))
        return shapes

    def pretrain(self, m: ModelConfig, at: KeyPath) -> None:
        """A pretrained base is for size presets, with whole batches, on a corpus that is there (when its data
        root is: a generated study writes only the demo corpus, when it generates its data)."""
        p, d = m.pretrain, self.recipe.data
        assert p is not None
        if m.path:
            self.problem(at, f"model {m.name!r} starts from the weights at path {m.path!r}: pretrain is for size "
                         "presets only", "remove pretrain, or replace path with size: <preset>")
        micro, batch = p.micro_batch or m.micro_batch, p.global_batch or m.global_batch
        if batch % (micro * m.dp):
            self.problem(at + ("global_batch",), f"global_batch={batch} must be a multiple of micro_batch*dp = "
                         f"{micro}*{m.dp}", f"e.g. {micro * m.dp * -(-batch // (micro * m.dp))}")
        corpus = Path(p.corpus)
        if corpus.is_absolute():
            if not corpus.is_file():
                self.problem(at + ("corpus",), f"pretraining corpus {corpus} not found",
                             "a JSON-lines file with one {\"text\": ...} per line")
        elif d.generate is not None:
            generated = Path(self.recipe.study.output_root) / self.recipe.study.name / "data"
            if corpus != Path(PRETRAIN_FILE) and not (generated / corpus).is_file():
                self.problem(at + ("corpus",), f"the generated data has no {p.corpus!r}",
                             f"use {PRETRAIN_FILE!r} (the demo corpus) or an absolute path")
        elif d.root and Path(d.root).is_dir() and not (Path(d.root) / corpus).is_file():
            self.problem(at + ("corpus",), f"pretraining corpus {p.corpus!r} not found under data.root {d.root}",
                         "a path relative to data.root, or an absolute path")

    def shape(self, m: ModelConfig, at: KeyPath) -> ModelShape | None:
        if m.path and (Path(m.path) / "config.json").is_file():
            try:
                return shape_from_hf_config(Path(m.path) / "config.json", m.family)
            except (KeyError, ValueError) as exc:
                self.problem(at + ("path",), f"cannot read the model shape from {m.path}/config.json: {exc}")
                return None
        if m.size is None:
            if m.path:
                self.problem(at + ("path",), f"{m.path}/config.json not found and no size preset given",
                             "add size: <preset> so the study can be planned before the weights are staged")
            else:
                self.problem(at, "a model needs a size preset or a path to HF weights", "add size: 7b or path: /models/...")
            return None
        if m.size not in PRESETS:
            close = difflib.get_close_matches(m.size, list(PRESETS), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else "presets: " + ", ".join(PRESETS)
            self.problem(at + ("size",), f"unknown size preset {m.size!r}", hint)
            return None
        return preset(m.size, family=m.family)

    def layout(self, m: ModelConfig, s: ModelShape, at: KeyPath) -> None:
        world = m.tp * m.pp * m.dp
        if world % m.nodes:
            self.problem(at + ("nodes",), f"tp*pp*dp = {world} ranks cannot be split evenly over {m.nodes} nodes")
        elif m.gpus_per_node is not None and m.device == "cuda" and m.gpus_per_node * m.nodes != world:
            self.problem(at + ("gpus_per_node",),
                         f"expected tp*pp*dp/nodes = {m.tp}*{m.pp}*{m.dp}/{m.nodes} = {world // m.nodes}, got {m.gpus_per_node}")
        if s.num_attention_heads % m.tp:
            self.problem(at + ("tp",), f"tp={m.tp} must divide the {s.num_attention_heads} attention heads",
                         "valid tp: " + ", ".join(str(d) for d in _divisors(s.num_attention_heads) if d <= 16))
        elif s.num_query_groups % m.tp:
            self.problem(at + ("tp",), f"tp={m.tp} must divide the {s.num_query_groups} key/value groups")
        if s.num_layers % (m.pp * m.vpp):
            self.problem(at + ("pp",), f"pp*vpp = {m.pp}*{m.vpp} must divide the {s.num_layers} layers")
        if m.vpp > 1 and m.pp == 1:
            self.problem(at + ("vpp",), "virtual pipeline stages need pp > 1")
        if m.global_batch % (m.micro_batch * m.dp):
            self.problem(at + ("global_batch",),
                         f"global_batch={m.global_batch} must be a multiple of micro_batch*dp = {m.micro_batch}*{m.dp}",
                         f"e.g. {m.micro_batch * m.dp * -(-m.global_batch // (m.micro_batch * m.dp))}")
        if m.sequence_parallel and m.tp == 1:
            self.problem(at + ("sequence_parallel",), "sequence parallelism needs tp > 1")
        if m.backend != "megatron" and (m.tp > 1 or m.pp > 1):
            why = "ZeRO-2 is data parallel only" if m.backend == "deepspeed" else "the hf backend is data parallel (DDP)"
            self.problem(at + ("backend",), f"tp/pp > 1 needs backend 'megatron' ({why})")
        if m.backend != "megatron" and self.recipe.training.activation_checkpointing == "selective":
            self.problem(("training", "activation_checkpointing"),
                         f"model {m.name!r} uses backend {m.backend!r}, which recomputes whole layers only",
                         "use full (or none), or backend megatron")
        if m.device == "cpu" and self.recipe.training.precision == "fp16":
            self.problem(("training", "precision"), f"model {m.name!r} runs on cpu, where fp16 training is not supported",
                         "use fp32 (or bf16)")
        if self.recipe.training.max_length > s.max_position_embeddings:
            self.problem(("training", "max_length"),
                         f"max_length={self.recipe.training.max_length} exceeds model {m.name!r}'s "
                         f"{s.max_position_embeddings} positions")

    # -- sweep ---------------------------------------------------------------------------------------------
    def sweep(self, facts: DataFacts) -> None:
        r, sw = self.recipe, self.recipe.sweep
        names = [m.name for m in r.models]
        if not (sw.curated or sw.synthetic or sw.mixes or sw.single_ability or sw.held_out):
            self.problem(("sweep",), "the sweep defines no trials",
                         "add curated, synthetic, mixes, single_ability or held_out")
        if len(set(sw.seeds)) != len(sw.seeds):
            self.problem(("sweep", "seeds"), "seeds repeat")
        arms = [(("sweep", arm), getattr(sw, arm)) for arm in ("curated", "synthetic", "single_ability", "held_out")]
        arms += [(("sweep", "mixes", i), mix) for i, mix in enumerate(sw.mixes)]
        for where, cfg in arms:
            seeds = getattr(cfg, "seeds", None)
            if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
                self.problem((*where, "seeds"), "an arm's seeds must be distinct and not empty",
                             "leave it out to use sweep.seeds")
        for arm in ("curated", "synthetic", "single_ability", "held_out"):
            cfg = getattr(sw, arm)
            if cfg is not None:
                self.model_refs(cfg.models, ("sweep", arm, "models"), names)
        if sw.curated:
            self.volumes(sw.curated.samples_per_ability, ("sweep", "curated", "samples_per_ability"))
            for n in sw.curated.samples_per_ability:
                self.fits(("sweep", "curated", "samples_per_ability"), r.data.abilities, n, facts, sw.curated.cap)
        if sw.synthetic:
            self.volumes(sw.synthetic.total_samples, ("sweep", "synthetic", "total_samples"))
            if not r.data.synthetic_pool and not r.data.generate:
                self.problem(("sweep", "synthetic"), "a synthetic arm needs data.synthetic_pool")
            for n in sw.synthetic.total_samples:
                if n > facts.synthetic_size and not sw.synthetic.cap:
                    self.problem(("sweep", "synthetic", "total_samples"),
                                 f"{n} samples requested but the synthetic pool holds {facts.synthetic_size}",
                                 "lower it or set cap: true")
        if sw.single_ability:
            sa = sw.single_ability
            self.volumes(sa.samples_per_ability, ("sweep", "single_ability", "samples_per_ability"))
            abilities = sa.abilities or r.data.abilities
            for j, a in enumerate(abilities):
                self.ability_ref(a, ("sweep", "single_ability", "abilities", j))
            for n in sa.samples_per_ability:
                self.fits(("sweep", "single_ability", "samples_per_ability"), abilities, n, facts, sa.cap)
        if sw.held_out:
            ho = sw.held_out
            if ho.max_per_ability < ho.min_per_ability:
                self.problem(("sweep", "held_out", "max_per_ability"),
                             f"max_per_ability={ho.max_per_ability} is below min_per_ability={ho.min_per_ability}")
            self.fits(("sweep", "held_out", "max_per_ability"), r.data.abilities, ho.max_per_ability, facts, ho.cap)
        seen: dict[str, int] = {}
        for i, mix in enumerate(sw.mixes):
            at: KeyPath = ("sweep", "mixes", i)
            if mix.name in seen:
                self.problem(at + ("name",), f"duplicate mix name {mix.name!r} (also sweep.mixes[{seen[mix.name]}])")
            seen[mix.name] = i
            self.model_refs(mix.models, at + ("models",), names)
            self.mix(mix, at, facts)

    def mix(self, mix, at: KeyPath, facts: DataFacts) -> None:
        abilities = self.recipe.data.abilities
        for key in mix.samples_per_ability:
            if key != "default":
                self.ability_ref(key, at + ("samples_per_ability", key), allow_default=True)
            if key in mix.fraction_per_ability:
                self.problem(at + ("fraction_per_ability", key),
                             f"{key!r} is given both a sample count and a fraction", "keep one of the two")
        for key, frac in mix.fraction_per_ability.items():
            if key != "default":
                self.ability_ref(key, at + ("fraction_per_ability", key), allow_default=True)
            if not 0 < frac <= 1:
                self.problem(at + ("fraction_per_ability", key), f"expected a fraction in (0, 1], got {frac:g}",
                             "use samples_per_ability for a count")
        if not mix.samples_per_ability and not mix.fraction_per_ability and not mix.synthetic_total_samples:
            self.problem(at, "the mix takes no data", "add samples_per_ability, fraction_per_ability or synthetic_total_samples")
        for a in abilities:
            key = a if a in mix.samples_per_ability else "default"
            if a in mix.fraction_per_ability or key not in mix.samples_per_ability:
                continue
            n, pool = mix.samples_per_ability[key], facts.pool_sizes.get(a, 0)
            if isinstance(n, int) and n > pool and not mix.cap:
                self.problem(at + ("samples_per_ability", key), f"{n} {a} samples requested but its pool holds {pool}",
                             "lower it, write 'all', or set cap: true")
        if mix.synthetic_total_samples > facts.synthetic_size and not mix.cap:
            self.problem(at + ("synthetic_total_samples",),
                         f"{mix.synthetic_total_samples} requested but the synthetic pool holds {facts.synthetic_size}",
                         "lower it or set cap: true")

    def model_refs(self, refs: tuple[str, ...] | None, at: KeyPath, names: list[str]) -> None:
        for j, ref in enumerate(refs or ()):
            if ref not in names:
                close = difflib.get_close_matches(ref, names, n=1, cutoff=0.5)
                self.problem(at + (j,), f"no model named {ref!r}",
                             f"did you mean {close[0]!r}?" if close else "models: " + ", ".join(names))

    def ability_ref(self, key: str, at: KeyPath, allow_default: bool = False) -> None:
        valid = list(self.recipe.data.abilities) + (["default"] if allow_default else [])
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            self.problem(at, f"{key!r} is not an ability of this study",
                         f"did you mean {close[0]!r}?" if close else "abilities: " + ", ".join(valid))

    def volumes(self, values: tuple[int, ...], at: KeyPath) -> None:
        if len(set(values)) != len(values):
            self.problem(at, "volumes repeat")

    def fits(self, at: KeyPath, abilities, n: int, facts: DataFacts, cap: bool) -> None:
        short = [f"{a} ({facts.pool_sizes.get(a, 0)})" for a in abilities if n > facts.pool_sizes.get(a, 0)]
        if short and not cap:
            self.problem(at, f"{n} samples per ability requested but these pools hold fewer: {', '.join(short)}",
                         "set cap: true to take what a pool has")

    # -- data, training, evaluation -------------------------------------------------------------------------
    def data(self) -> None:
        d = self.recipe.data
        for j, a in enumerate(d.abilities):
            if a not in REGISTRY and not (d.root and Path(d.root, "curated").is_dir()):
                close = difflib.get_close_matches(a, list(REGISTRY), n=1, cutoff=0.6)
                self.problem(("data", "abilities", j), f"unknown ability {a!r} (not in the registry, no files to read it from)",
                             f"did you mean {close[0]!r}?" if close else "")
        if len(set(d.abilities)) != len(d.abilities):
            self.problem(("data", "abilities"), "abilities repeat")
        if d.root is None and d.generate is None:
            self.problem(("data",), "no data: set data.root (a DoIT-layout folder) or data.generate")
        ood_keys = [o.key for o in OUT_OF_DOMAIN]
        for j, o in enumerate(self.recipe.evaluation.out_of_domain):
            if o not in ood_keys and not (d.root and Path(d.root, "curated", "test", f"{o}_test.json").is_file()):
                close = difflib.get_close_matches(o, ood_keys, n=1, cutoff=0.5)
                self.problem(("evaluation", "out_of_domain", j), f"unknown out-of-domain set {o!r}",
                             f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(ood_keys))

    def training(self) -> None:
        t = self.recipe.training
        if t.warmup_steps and t.warmup_ratio:
            self.problem(("training", "warmup_ratio"), "give warmup_steps or warmup_ratio, not both")
        if t.min_lr > t.lr:
            self.problem(("training", "min_lr"), f"min_lr={t.min_lr:g} exceeds lr={t.lr:g}")
        if not self.recipe.evaluation.splits:
            self.problem(("evaluation", "splits"), "evaluate at least one split")
        if self.recipe.evaluation.test_on == "selected" and "valid" not in self.recipe.evaluation.splits \
                and "test" in self.recipe.evaluation.splits:
            self.problem(("evaluation", "test_on"), "selecting a checkpoint for test needs the valid split",
                         "add valid to splits or set test_on: all")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def shape_from_hf_config(path: Path, family: str) -> ModelShape:
    """A ModelShape from an HF config.json (Llama / Qwen2 / Mistral style keys)."""
    c = json.loads(path.read_text())
    heads = c["num_attention_heads"]
    return ModelShape(
        family=family if family else ("qwen2" if c.get("model_type") == "qwen2" else "llama"),
        num_layers=c["num_hidden_layers"], hidden_size=c["hidden_size"], num_attention_heads=heads,
        num_query_groups=c.get("num_key_value_heads") or heads, ffn_hidden_size=c["intermediate_size"],
        vocab_size=c["vocab_size"], max_position_embeddings=c.get("max_position_embeddings", 2048),
        rotary_base=float(c.get("rope_theta", 10000.0)), norm_epsilon=float(c.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    )
