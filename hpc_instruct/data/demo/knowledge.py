"""The demo's invented world: the fact tables and rules the ten tasks ask about.

Rules (biology, ethics, classifiers) are fixed; the history table is drawn from the seed, so each seed is a
different "history" that can only be learned from data (or from the pretraining corpus).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Biology: an invented organism is colour + body part + class (红角鱼). Its habitat follows its class and its
# food follows its body part, so two small rules answer every question. Sixteen organisms live in the world
# (every colour with every class; the body part turns with both), so its 64 facts recur in every pool: a tiny
# model can learn them by recall as well as by the rules.
COLOURS = ("红", "蓝", "绿", "黄")
BODY_FOOD = {"角": "草叶", "尾": "小虫", "翅": "果子", "鳞": "水草"}
CLASS_HOME = {"鱼": "水里", "鸟": "树上", "兽": "山洞", "虫": "土里"}
ORGANISMS = tuple(c + tuple(BODY_FOOD)[(i + j) % 4] + k
                  for i, c in enumerate(COLOURS) for j, k in enumerate(CLASS_HOME))


def organism_facts(name: str) -> dict[str, str]:
    colour, body, kind = name[0], name[1], name[2]
    return {"colour": colour + "色", "food": BODY_FOOD[body], "home": CLASS_HOME[kind], "class": kind + "类"}


# Chinese: measure words (real usage) and antonyms.
CLASSIFIERS = {
    "本": ("书", "本子", "词典", "画册"),
    "只": ("猫", "狗", "鸟", "鸡", "鸭子", "羊", "兔子"),
    "条": ("鱼", "河", "路", "裤子", "蛇", "绳子"),
    "张": ("纸", "桌子", "床", "票", "照片"),
    "把": ("伞", "刀", "椅子", "尺子", "钥匙"),
    "辆": ("汽车", "自行车", "火车"),
    "朵": ("花", "云"),
    "棵": ("树", "白菜"),
    "件": ("衣服", "事", "礼物"),
    "块": ("石头", "面包", "手表", "蛋糕"),
    "头": ("牛", "猪", "大象"),
    "双": ("鞋", "筷子", "手套"),
}
NOUN_CLASSIFIER = {noun: c for c, nouns in CLASSIFIERS.items() for noun in nouns}
ANTONYMS = {"大": "小", "多": "少", "高": "低", "长": "短", "快": "慢", "冷": "热", "黑": "白", "上": "下",
            "左": "右", "前": "后", "开": "关", "来": "去", "新": "旧", "早": "晚", "远": "近", "轻": "重"}
ANTONYMS.update({v: k for k, v in list(ANTONYMS.items())})

# Ethics: deeds that are right or wrong.
GOOD_DEEDS = ("帮助老人过马路", "认真听老师讲课", "按时归还借的书", "保护路边的小树", "排队上车", "爱护小动物",
              "做错事主动认错", "随手关掉水龙头", "安慰难过的朋友", "捡起地上的垃圾", "和同学分享玩具", "见到长辈问好")
BAD_DEEDS = ("偷拿别人的东西", "说谎骗人", "乱扔垃圾", "欺负小同学", "考试时抄别人的答案", "把饭菜倒掉",
             "打破窗户就跑", "在队伍里插队", "骂人", "踩坏花坛里的花", "抄同学的作业", "在图书馆大声吵闹")

# Role play: personas, the word each ends every sentence with, and their facts.
@dataclass(frozen=True)
class Persona:
    name: str
    marker: str
    food: str
    home: str
    hobby: str


PERSONAS = (
    Persona("小猫", "喵", "鱼", "屋顶上", "晒太阳"),
    Persona("小狗", "汪", "骨头", "院子里", "追球"),
    Persona("小鸟", "啾", "虫子", "树上", "唱歌"),
    Persona("机器人", "嘀", "电", "工厂里", "算数"),
    Persona("小熊", "嗷", "蜂蜜", "山洞里", "睡觉"),
    Persona("小羊", "咩", "青草", "草原上", "散步"),
    Persona("青蛙", "呱", "苍蝇", "池塘边", "跳水"),
    Persona("小牛", "哞", "稻草", "牛棚里", "耕田"),
)

# Creative writing: themes and the two-character phrases their poems are made of.
THEMES = {
    "春天": ("花开", "草绿", "风暖", "燕归", "柳青", "雨细", "桃红", "日长"),
    "大海": ("浪高", "船远", "鱼跃", "沙软", "水蓝", "潮来", "帆白", "岛静"),
    "月亮": ("夜深", "光冷", "星稀", "梦甜", "云淡", "影长", "灯暗", "风轻"),
    "冬天": ("雪白", "冰厚", "梅香", "炉暖", "天寒", "山静", "路滑", "窗明"),
    "秋天": ("叶黄", "果熟", "雁南", "天高", "稻香", "霜白", "枫红", "月圆"),
    "家乡": ("河清", "桥小", "田绿", "屋旧", "鸡鸣", "犬吠", "井深", "烟起"),
}
LINE_ENDINGS = ("来", "开", "中", "天", "香", "长", "家", "歌", "飞", "新", "光", "声", "山", "水", "红", "春")


@dataclass(frozen=True)
class Dynasty:
    name: str
    order: int  # 1 = earliest
    capital: str
    founder: str


HISTORY_DYNASTIES = 8  # few enough facts (8 x 4 question kinds) that 64 records cover most of them
_DYNASTY_CHARS = "青木金石云山水火"
_CAPITAL_CHARS = "东西南北平安乐宁"
_SURNAMES = "王李张刘陈杨赵周"
_GIVEN = "文武德仁义礼智信"


def history_table(seed: int) -> tuple[Dynasty, ...]:
    """Eight invented dynasties with a seeded order, capital and founder (each value used once)."""
    n = HISTORY_DYNASTIES
    rng = random.Random(f"demo-history:{seed}")
    order = rng.sample(range(1, n + 1), n)
    capitals = rng.sample(_CAPITAL_CHARS, n)
    founders = rng.sample([s + g for s in _SURNAMES for g in _GIVEN], n)
    return tuple(Dynasty(c + "朝", order[i], capitals[i] + "城", founders[i])
                 for i, c in enumerate(_DYNASTY_CHARS))
