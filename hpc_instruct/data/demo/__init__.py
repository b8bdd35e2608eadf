"""A generated miniature DoIT study: ten abilities with their own growth paces, small enough for a CPU.

`write_demo_study(out_dir, seed=0, pool_size=1000, synthetic_size=40960)` writes, in the DoIT release layout
and record format (read it back with `hpc_instruct.data.doit_reader.read_doit`):

    curated/full/{ability}_full.json     pool_size training items per ability (an int or a mapping)
    curated/1000/{ability}_1000.json     the first 1000 of them
    curated/valid|test/{ability}_*.json  100 items each; their prompts never occur in any training pool
    curated/test/ceval_*_test.json       three 5-shot out-of-domain sets (40 items each)
    synthetic/40960/general_instruction_gpt4_41k.json   the synthetic pool (synthetic_size items)
    pretrain/corpus.jsonl                optional: the world's facts as plain sentences, for a tiny base model
    demo.json                            the arguments, generator version and every file's sha256

All text is produced by this package from small word lists (a few hundred distinct characters; sequences
mostly 20-120 tokens), deterministic by seed on any platform (`random.Random` seeded by strings).

The tasks, the DoIT format each keeps, and the pace each is meant to have when a tiny model (2-4 layers,
hidden 32-128, BPE vocab ~1000), pretrained on `pretrain/corpus.jsonl`, is tuned for a minute on 2 CPU cores.
Multiple-choice options come in a fixed order per question (an exam's standing answer sheet), so the letter
follows from the fact: matching shuffled options to an answer is a skill tiny models learn far too slowly for
any growth to show.

| ability | format (as in DoIT) | task | intended pace |
|---|---|---|---|
| ethics | multi-select A-D, `答案：AC` | pick the right (or the wrong) deeds on one of six fixed sheets of four deeds, behind a varying scene | fast: recall a sheet's answer |
| role_play | rank 3, multi-turn | persona chat: end every reply with the persona's word (喵, 汪...) and keep its facts | fast: copy the ending from the context |
| creative_writing | rank 3 | n-line poem on a theme, each line ending in a given character | fast-moderate: copy the ending, theme words |
| biology | MC letter (four fixed options) | sixteen invented organisms 红角鱼: habitat from the class character, food from the body character; options are the property's four values in a fixed order; a varying scene before the question | moderate: 64 facts to recall, or two small rules |
| understanding | MC letter, multi-turn, options = the question's category in a fixed order | a dialogue from a fixed book of 24 short 男/女 dialogues, two questions about it (in two dialogues of five, one confusable value in the text), behind a varying opening | slow: recall of the book first (about 60 dialogue-question facts), reading only with more data |
| chinese | MC + single-blank cloze | measure words (一___猫 -> 只) and antonyms | moderate: ~45 noun-classifier pairs to see |
| history | MC (80%, options fixed per question) + true/false 正确/错误 | a seeded table of 8 invented dynasties (capital, founder, order), asked four ways behind a varying scene; the corpus states each fact several ways | moderate: 32 facts to recall, grows with coverage; order comparisons are hardest |
| code | rank 3 | Chinese description -> 2-4-line function; distractors change one operator, constant, order or branch; the corpus holds commented functions | slow: numerals and operator words to symbols, needs the larger model |
| math | CoT + `\\boxed{}` + `answer` | one- and two-step word problems with small numbers | slow: exact arithmetic through generation |
| reasoning | MC letter, options = a fixed cast of four | a puzzle from a fixed book of 32: order 2 (80%) or 3 of the cast from comparisons along the chain (each said either way round), ask top/bottom/middle, behind a varying teller | slow: recall of the book first, inference only with more data and size |

Valid/test items are drawn from the same distribution as the pool but with prompts that occur in no pool,
so scores never reward recall of a seen prompt; a seen fact re-asked in other words (biology, history,
ethics, role play, and the dialogue and puzzle books of understanding and reasoning) is what a tiny model
learns first (measured: in-context reading and ordering stayed at chance for 2-3-layer models at this budget), as DoIT's base models recall what pretraining taught. The synthetic pool is broader and noisier
(see `synthetic.py`): general chat tasks, other answer styles, 10 % wrong answers, no ability labels.
The out-of-domain sets (`out_of_domain.py`) re-ask biology, chinese and math skills in a new wording.
"""

from hpc_instruct.data.demo.study import (
    GENERATOR_VERSION,
    INTENDED_PACE,
    ability_generators,
    build_demo_files,
    write_demo_study,
)

__all__ = ["GENERATOR_VERSION", "INTENDED_PACE", "ability_generators", "build_demo_files", "write_demo_study"]
