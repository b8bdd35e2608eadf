"""Tokenizers: the embedded default (a small byte-level BPE trained offline) and real ones loaded by path.

The embedded default needs no model hub: `build_builtin_tokenizer` trains a byte-level BPE (~2k tokens)
with `tokenizers` on a small Chinese + English corpus kept in this file (plus any texts a caller adds), and
writes an ordinary Hugging Face tokenizer folder (`tokenizer.json`, `tokenizer_config.json`) that
`AutoTokenizer.from_pretrained` loads, with `<pad>`, `<user>`, `<assistant>`, `<eot>` as special tokens.
Byte-level means every string is encodable (no unknown token). Training is deterministic: the same texts
give byte-identical files, so the folder's `tokenizer_hash` is stable across runs.

`load_tokenizer` also opens real tokenizers: a HF folder, a vocab-only `.gguf` file (Qwen2, LLaMA), or a
bare SentencePiece `.model` file (LLaMA-style; transformers then needs `protobuf`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from hpc_instruct.data.assets import cache_root
from hpc_instruct.data.template import DOIT_SPECIAL_TOKENS, EOT_TOKEN

BUILTIN = "builtin"
BUILTIN_VOCAB_SIZE = 2048
BUILTIN_PRE_TOKENIZER = "han-isolated+bytelevel"  # in the cache key: a folder built with other settings is not reused
PAD_TOKEN = "<pad>"
BUILTIN_SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, *DOIT_SPECIAL_TOKENS)  # ids 0, 1, 2, 3
# Files that define a tokenizer folder's behaviour (README, licences and model weights are not hashed).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "chat_template.jinja",
    "chat_template.json",
)

# The training corpus of the embedded default: instruction-style Chinese and English text in the shapes the
# ten DoIT abilities use (exam questions, options, code, dialogue, arithmetic). Written for this project.
BUILTIN_CORPUS: tuple[str, ...] = (
    "问题：细胞是生物体结构和功能的基本单位。下列关于细胞的说法，正确的是哪一项？"
    "A. 所有细胞都有细胞核 B. 细胞膜控制物质进出 C. 病毒是由细胞构成的 D. 植物细胞没有线粒体 答案：B",
    "光合作用是绿色植物利用光能，把二氧化碳和水转化成储存能量的有机物，并且释放出氧气的过程。"
    "呼吸作用则分解有机物，释放能量，供给生命活动的需要。",
    "遗传信息主要储存在细胞核中的DNA上，基因是有遗传效应的DNA片段。生物的性状由基因控制，也受环境影响。",
    "秦始皇统一六国以后，建立了中央集权的国家，统一了文字、货币和度量衡。这一说法正确吗？答：正确。",
    "唐朝是中国历史上一个强盛的朝代，经济繁荣，文化发达，对外交流频繁。丝绸之路把中国和西方联系起来。",
    "判断题：郑和下西洋发生在明朝。正确。鸦片战争爆发于一八四零年，是中国近代史的开端。对。",
    "请用Python写一个函数，输入一个整数数组，返回其中和为目标值的两个数的下标。"
    "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n"
    "        if target - x in seen:\n            return [seen[target - x], i]\n        seen[x] = i\n    return []\n",
    "给定一个字符串，请找出其中不含有重复字符的最长子串的长度。我们可以使用滑动窗口，"
    "用左右两个指针维护窗口，并用哈希表记录每个字符最后出现的位置。时间复杂度为O(n)。",
    "请以“春天的早晨”为题，写一篇短文。春天的早晨，阳光温柔地洒在大地上，小鸟在枝头歌唱，"
    "河边的柳树长出了嫩绿的新芽，人们走出家门，感受着生活的美好和希望。",
    "写一首关于秋天的小诗：秋风轻轻吹过田野，金黄的稻谷低下了头，远山像一幅安静的画，月光照亮回家的路。",
    "下列词语中，没有错别字的一项是哪一个？请在横线上填写恰当的词语：他做事一向认真，从不马虎。"
    "成语“画蛇添足”比喻做了多余的事，反而不恰当。",
    "阅读下面的对话，回答问题。男：你明天有时间吗？我们一起去图书馆看书吧。女：明天上午我要上课，"
    "下午可以。男：那我们下午两点在学校门口见面。问题：他们什么时候见面？A. 明天上午 B. 明天下午两点 C. 今天晚上",
    "你现在扮演一位耐心的老师，和学生聊天。学生：老师，我觉得数学太难了，怎么办？老师：别着急，"
    "我们先从基础的题目开始练习，每天进步一点点，你一定可以学好的。学生：谢谢老师，我会努力的！",
    "逻辑推理：所有的学生都喜欢读书，小王是学生，所以小王喜欢读书。如果前提为真，那么结论一定为真。"
    "以下哪项如果为真，最能削弱上述论证？请说明理由。",
    "数学题：一个长方形的长是8厘米，宽是5厘米，它的面积是多少平方厘米？解：面积等于长乘以宽，"
    "8 × 5 = 40，所以面积是40平方厘米。答案是 $\\boxed{40}$。",
    "已知 x + y = 10，x - y = 2，求 x 和 y 的值。两式相加得 2x = 12，所以 x = 6，y = 4。"
    "因此答案为 \\boxed{x=6, y=4}。计算 3/4 + 1/2 = 5/4，约等于1.25。",
    "伦理题：在公共场所，我们应该遵守秩序，尊重他人，保护环境。以下哪些行为是正确的？"
    "A. 排队上车 B. 随地乱扔垃圾 C. 帮助有困难的人 D. 大声喧哗 答案：AC",
    "人工智能应当造福人类，尊重隐私，保证公平，不能伤害他人。诚实守信是做人的基本原则，我们要对自己的行为负责。",
    "中国有很多美丽的城市，例如北京、上海、广州、深圳、杭州、南京、成都和西安。每个城市都有自己的特点和故事。",
    "Question: Which organ pumps blood through the human body? A. Lung B. Heart C. Liver D. Kidney Answer: B",
    "Photosynthesis converts light energy into chemical energy. Plants take in carbon dioxide and water, and "
    "release oxygen. Cells are the basic unit of life, and every living thing is made of one or more cells.",
    "The Industrial Revolution began in Britain in the eighteenth century. It changed how people worked and "
    "lived, and it spread to Europe and North America. Is this statement true or false? True.",
    "Write a function that returns the n-th Fibonacci number.\n"
    "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "class Solution:\n    def max_profit(self, prices: list[int]) -> int:\n        best, low = 0, float('inf')\n"
    "        for p in prices:\n            low = min(low, p)\n            best = max(best, p - low)\n        return best\n",
    "Write a short story about a robot who learns to paint. The robot watched the sunset every evening and "
    "tried to capture the colours: orange, purple and gold. One day, a child said the painting made her happy.",
    "Read the dialogue and answer the question. Woman: Did you finish the report? Man: Not yet, I will send it "
    "tomorrow morning. Question: When will the man send the report? A. Today B. Tomorrow morning C. Next week",
    "You are a friendly travel guide. User: What should I see in Paris? Assistant: You could visit the Louvre, "
    "walk along the Seine, and see the Eiffel Tower at night. Would you like some restaurant suggestions too?",
    "If all cats are animals and some animals are black, can we conclude that some cats are black? No, the "
    "conclusion does not follow from the premises. Which of the following, if true, most strengthens the argument?",
    "Solve for x: 2x + 3 = 11. Subtract 3 from both sides: 2x = 8. Divide by 2: x = 4. The answer is "
    "$\\boxed{4}$. What is 15% of 200? 0.15 * 200 = 30. The sum of the angles of a triangle is 180 degrees.",
    "We should be honest, respect other people, and protect their privacy. Which of the following actions are "
    "ethical? A. Returning a lost wallet B. Cheating on an exam C. Helping a neighbour D. Spreading rumours Answer: AC",
    "0 1 2 3 4 5 6 7 8 9 10 12 20 25 50 100 1000 2023 3.14 -1 +2 = < > ( ) [ ] { } , . ; : ! ? ' \" / \\ | @ # % & * _ ~",
)

# Common Chinese characters (a hand-written list, duplicates harmless). Each one is drilled on its own line
# twice so that it becomes a single token even if the corpus above uses it only once.
COMMON_HANZI = (
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去世"
    "行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知开头两已"
    "全问长回明文现走重点部实机力体高情理话工己名因样正果意想白电最车百被美几很外信水四做入手老动气真新给先关系"
    "本今女业各表产少平间通接城或许必西东北南度把何利相合解立色条教路望打数代民品政结计声听记写读书字语词句题答"
    "案选项确误例所但虽如已经非常可应该需认现示包括根据目的过程影响变化条件环境社会历史科技术自然物细胞植质能量运"
    "速空积宽角直线平行圆周率整除等于程函概统逻辑推论证前提假设削弱加强支持反对判断择错伦德诚守尊重隐私责任律规则"
    "秩序遵帮助伤害安全健康活习友师父母孩庭校市农村界京海春夏秋冬风雨雪花草树木山河湖太阳月亮星空早晨晚昨午期音"
    "乐影故诗歌章读汉段落标拼阅男聊扮演角色游戏码序变组串列循环返输排查找算复杂型布尔类对象试调异常打印请帮我你们"
)

# Common English words (hand-written), drilled like the characters so whole words become tokens.
COMMON_WORDS = (
    "the of and to in is it that for you was with on as are be this have from or one had by word but not what "
    "all were we when your can said there use an each which she do how their if will up other about out many "
    "then them these so some her would make like him into time has look two more write go see number no way "
    "could people my than first water been call who its now find long down day did get come made may part "
    "over new sound take only little work know place year live me back give most very after thing our just name "
    "good sentence man think say great where help through much before line right too mean old any same tell boy "
    "follow came want show also around form three small set put end does another well large must big even such "
    "because turn here why ask went men read need land different home us move try kind hand picture again "
    "change off play spell air away animal house point page letter mother answer found study still learn should "
    "question answer true false correct choose option following statement explain reason example problem "
    "solution function return value list string number integer array result step total equal sum cell life "
    "history science language english chinese story poem dialogue assistant user friend teacher student"
)


def _training_texts(texts: Iterable[str] | None) -> list[str]:
    """The corpus, the drills (each character and word twice) and the caller's texts, in a fixed order."""
    seen = dict.fromkeys(COMMON_HANZI + "".join(BUILTIN_CORPUS))
    hanzi = [c for c in seen if "\u4e00" <= c <= "\u9fff"]
    words = list(dict.fromkeys(COMMON_WORDS.split()))
    drill = "\n".join(hanzi + hanzi) + "\n" + " ".join(words + words + [w.capitalize() for w in words] * 2)
    return [*BUILTIN_CORPUS, drill, *(texts or [])]


def build_builtin_tokenizer(
    out_dir: str | Path, texts: Iterable[str] | None = None, vocab_size: int = BUILTIN_VOCAB_SIZE
) -> Path:
    """Train the embedded default byte-level BPE and write it as a HF tokenizer folder (atomically).

    Args:
        out_dir: folder to create; replaced if it exists.
        texts: extra training texts (e.g. the study's demo data), appended to `BUILTIN_CORPUS`.
        vocab_size: the target size; a small corpus may stop earlier (merges need a pair seen twice).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = _training_texts(texts)
    tok = Tokenizer(models.BPE())
    # Every Chinese character is its own piece before BPE (merges join its UTF-8 bytes, never two characters),
    # as Chinese LLaMA-style vocabularies mostly do: merged phrases (小明比小红, 红鳞) would make every name pair
    # or organism a token of its own, which a small corpus cannot teach compositionally.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{Han}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(BUILTIN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The corpus order is fixed and merges are ranked by (count, pair), so the files are deterministic.
    tok.train_from_iterator(corpus, trainer=trainer)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # a class both transformers 4.x and 5.x have
        "eos_token": EOT_TOKEN,
        "pad_token": PAD_TOKEN,
        "additional_special_tokens": list(DOIT_SPECIAL_TOKENS),
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
    }
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        tok.save(str(tmp / "tokenizer.json"), pretty=True)
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def builtin_tokenizer_dir(cache_dir: str | Path | None = None) -> Path:
    """The embedded default tokenizer folder, built once into the cache (keyed by corpus and settings)."""
    import tokenizers

    key = hashlib.sha256(
        json.dumps(
            [_training_texts(None), BUILTIN_VOCAB_SIZE, BUILTIN_SPECIAL_TOKENS, BUILTIN_PRE_TOKENIZER,
             tokenizers.__version__]
        ).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir or cache_root() / "tokenizers") / f"builtin-{key}"
    if not (path / "tokenizer.json").is_file():
        try:
            build_builtin_tokenizer(path)
        except OSError:  # another process built it at the same moment
            if not (path / "tokenizer.json").is_file():
                raise
    return path


def load_tokenizer(source: str | Path, cache_dir: str | Path | None = None) -> Any:
    """A Hugging Face tokenizer from "builtin", a tokenizer folder, a `.gguf` file or a SentencePiece `.model`.

    A `.gguf` or `.model` file is converted once (tens of seconds for a 150k vocabulary) into a tokenizer
    folder under `cache_dir` (default `~/.cache/hpc_instruct/tokenizers`), keyed by the file's content and
    the transformers version; every load, the first included, reads that folder, so the loaded tokenizer
    (and its `tokenizer_hash`) is the same each time.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file type is not one of the above.
    """
    from transformers import AutoTokenizer

    root = Path(cache_dir or cache_root() / "tokenizers")
    if str(source) == BUILTIN:
        return AutoTokenizer.from_pretrained(str(builtin_tokenizer_dir(root)))
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"tokenizer {path} does not exist (give a folder, a .gguf or a .model file)")
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    if path.suffix == ".json":
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if path.suffix == ".gguf":
        convert = partial(AutoTokenizer.from_pretrained, str(path.parent), gguf_file=path.name)
    elif ".model" in path.suffixes:
        convert = partial(_load_sentencepiece, path)
    else:
        raise ValueError(
            f"cannot tell what tokenizer {path} is: expected a folder, a .gguf, .json or .model file"
        )
    return AutoTokenizer.from_pretrained(str(_converted(path, root, convert)))


def _converted(path: Path, root: Path, convert: Callable[[], Any]) -> Path:
    """The tokenizer folder converted from a single-file tokenizer, written once (atomically) under root."""
    import transformers

    folder = root / f"converted-{path.stem}-{tokenizer_hash(path)[:12]}-{transformers.__version__}"
    if not (folder / "tokenizer.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            convert().save_pretrained(str(tmp))
            os.replace(tmp, folder)
        except OSError:  # another process converted it first
            if not (folder / "tokenizer.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _load_sentencepiece(path: Path) -> Any:
    """A LLaMA-style tokenizer from a bare SentencePiece model (any file name), via a temporary folder."""
    from transformers import LlamaTokenizerFast

    try:
        import google.protobuf  # noqa: F401  (transformers reads the SentencePiece model proto with it)
    except ImportError as e:
        raise ImportError(
            f"reading the SentencePiece model {path} needs protobuf: pip install 'protobuf>=4.25,<8'"
        ) from e
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(path.resolve(), Path(tmp) / "tokenizer.model")
        return LlamaTokenizerFast.from_pretrained(tmp, legacy=False)


def tokenizer_hash(source: Any) -> str:
    """Content hash of a tokenizer: of its files (a folder or file path), or of a loaded tokenizer.

    For a path it hashes the bytes of the files that define behaviour (`TOKENIZER_FILES`, or the one file
    given). For a loaded tokenizer it hashes what encoding depends on: the serialised fast tokenizer (vocab,
    merges, normalizer, pre-tokenizer, added tokens), the special tokens and the chat template, so tokens
    added in memory (the DoIT ones) change the hash.
    """
    h = hashlib.sha256()
    if isinstance(source, str | Path):
        path = Path(source)
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.name in TOKENIZER_FILES)
        if not files:
            raise FileNotFoundError(f"no tokenizer files in {path} (looked for {', '.join(TOKENIZER_FILES)})")
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()
    backend = getattr(source, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow (pure Python / SentencePiece) tokenizer: its vocabulary in id order
        h.update(
            json.dumps(sorted(source.get_vocab().items(), key=lambda kv: kv[1]), ensure_ascii=False).encode()
        )
    specials = {k: str(v) for k, v in sorted(source.special_tokens_map.items())}
    h.update(json.dumps([specials, getattr(source, "chat_template", None)]).encode())
    return h.hexdigest()
