"""Corpus-aware calibration of the semantic score.

The best cosine a question reaches depends on the corpus as much as on the question: with more passages,
an unrelated question finds a closer neighbour by chance. At build time we measure that noise floor with a
fixed set of everyday questions that no policy corpus answers, and express a question's semantic score in
standard deviations above it. The questions are generic on purpose: they describe "off-topic", not any
evaluation set.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_QUESTIONS = (
    "明天会下雨吗？", "附近有什么好吃的餐馆？", "怎么做番茄炒蛋？", "手机充不进电怎么办？",
    "这部电视剧好看吗？", "篮球比赛几点开始？", "怎样减肥最有效？", "猫咪不吃饭怎么回事？",
    "去北京旅游有什么推荐？", "电脑开机很慢怎么处理？", "今晚吃什么好？", "孩子发烧了怎么办？",
    "哪款耳机音质最好？", "怎么学好英语口语？", "最近有什么新上映的电影？", "路由器密码忘了怎么办？",
    "泡茶用多少度的水合适？", "跑步膝盖疼怎么缓解？", "如何给花浇水？", "周末适合去哪里爬山？",
    "奶茶店的招牌饮品是什么？", "怎样挑选新鲜的西瓜？", "洗衣机有异味怎么清洗？", "钢琴初学者该怎么练习？",
    "汽车保养多久做一次？", "失眠睡不着怎么办？", "蛋糕怎么烤才松软？", "游戏账号被盗了怎么找回？",
    "哪里能买到便宜的机票？", "冬天皮肤干燥怎么护理？", "宠物狗怎么训练上厕所？", "羽毛球拍怎么选？",
    "家里有蟑螂怎么消灭？", "怎么拍出好看的照片？", "晚上睡前喝牛奶好吗？", "what time is it now?",
    "how do I bake bread?", "好无聊啊，讲个笑话吧", "推荐几首好听的歌", "月亮为什么有阴晴圆缺？",
)


def background_stats(semantic_scores: list[float]) -> dict[str, float]:
    """Mean and spread of the background questions' best cosine on one corpus."""
    values = np.asarray(semantic_scores, dtype=np.float64)
    return {"semantic_mean": round(float(values.mean()), 6), "semantic_std": round(float(max(values.std(), 1e-3)), 6),
            "questions": len(values)}


def z_score(semantic: float, stats: dict[str, float] | None) -> float:
    if not stats:
        return 0.0
    return (semantic - stats["semantic_mean"]) / stats["semantic_std"]
