"""Generate realistic batch files for the benchmark, reproducibly (fixed seed).

Kinds:
  unique  every message is unique text, Chinese and English mixed, as in a job
          that classifies or summarises one document per request
  shared  every request repeats one long system prompt and two few-shot
          examples (about 3.5 KB), then a unique document, as extraction jobs do
  large   long documents, up to the Batch API's 500 MB per file, for memory
  tiny    10 lines, for start-up time

Files go to benchmarks/data/ (git-ignored) and are reused when the same kind
and size were generated before.

    python benchmarks/generate.py unique shared tiny [--scale 0.1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
VERSION = 1  # bump when the generated text changes, so cached files are rebuilt

# kind: (requests, target bytes) at scale 1
SIZES = {
    "unique": (50_000, 130_000_000),
    "shared": (25_000, 130_000_000),  # longer lines: the shared part is about 3.5 KB
    "large": (50_000, 500_000_000),
    "tiny": (10, 26_000),
}

ZH_WORDS = (
    "我们 你们 他们 公司 客户 产品 服务 订单 价格 质量 时间 问题 需要 可以 已经 因为 所以 但是 如果 虽然 "
    "非常 比较 一直 马上 今天 明天 昨天 上午 下午 晚上 地址 电话 快递 物流 发货 收货 退款 退货 换货 售后 "
    "系统 数据 模型 接口 文档 用户 账号 密码 登录 注册 支付 发票 金额 优惠 活动 会员 积分 评价 反馈 投诉 "
    "手机 电脑 耳机 屏幕 电池 充电 包装 颜色 尺寸 材料 重量 功能 设计 体验 效果 速度 稳定 安全 方便 简单 "
    "北京 上海 广州 深圳 杭州 成都 南京 武汉 西安 苏州 市场 行业 经济 政策 发展 增长 研究 报告 分析 结果 "
    "学生 老师 学校 课程 考试 成绩 作业 学习 工作 项目 团队 经理 部门 会议 计划 目标 任务 进度 预算 成本 "
    "医院 医生 病人 药品 检查 治疗 健康 运动 饮食 睡眠 天气 温度 城市 交通 地铁 公交 机场 酒店 旅游 景点 "
    "满意 失望 推荐 希望 建议 感谢 抱歉 确认 处理 解决 联系 回复 通知 提醒 更新 修改 删除 添加 保存 提交 "
    "合同 条款 责任 权利 义务 期限 费用 付款 结算 账单 利润 收入 支出 销售 采购 库存 供应 生产 工厂 设备 "
    "文章 内容 标题 作者 读者 新闻 消息 信息 技术 科学 人工 智能 算法 训练 推理 测试 版本 功能 性能 效率"
).split()
ZH_PUNCT_MID = "，，，、；：".replace("", " ").split()
ZH_PUNCT_END = "。。。。！？".replace("", " ").split()
ZH_MIXED = ("API", "App", "iPhone", "Wi-Fi", "GPU", "AI", "SKU", "CEO", "VIP", "PDF", "Excel", "Python", "5G", "USB-C")
EN_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no what up out more about into than them "
    "customer order delivery package refund return product quality price service support account payment invoice "
    "shipping warranty battery screen charger cable laptop phone headphones speaker camera lens display keyboard "
    "report market growth revenue profit quarter analysis results data model system update version release feature "
    "team manager meeting project deadline budget schedule review feedback request issue problem solution answer "
    "hospital doctor patient treatment health weather city traffic airport hotel travel museum restaurant menu "
    "quickly slowly really very quite almost always never often sometimes usually clearly simply exactly nearly "
    "good bad great small large new old fast slow cheap expensive reliable broken happy disappointed excellent poor "
    "received ordered arrived returned contacted replied waited checked fixed replaced opened closed tested used "
    "please thank sorry hello because however although therefore while after before during since until unless "
    "week month year morning evening today yesterday tomorrow hour minute second time day night weekend holiday"
).split()
EN_PUNCT_MID = (",", ",", ",", ";", " -")
EN_PUNCT_END = (".", ".", ".", ".", "!", "?")

SYSTEM_SHARED = (
    "你是一名专业的信息抽取助手。请仔细阅读用户提供的文本（可能是中文、英文或中英混合），"
    "从中抽取结构化字段，并严格按照下面的 JSON 格式输出，不要输出任何其他内容。\n\n"
    "You are a careful information-extraction assistant. Read the document the user gives you, which may be "
    "written in Chinese, English or both, and extract the fields below. Output exactly one JSON object and "
    "nothing else: no explanation, no Markdown fences.\n\n"
    "字段说明 / Fields:\n"
    "- order_id: 订单号，字符串；如果文本中没有，填 null。The order number as a string, or null.\n"
    "- customer_name: 客户姓名或公司名称。The customer's name or company.\n"
    "- product: 涉及的产品名称，尽量使用原文中的写法。The product, as written in the text.\n"
    "- amount: 金额，数字，不带货币符号；多个金额时取总额。The total amount as a number.\n"
    "- currency: 货币代码，例如 CNY、USD、EUR。ISO 4217 code.\n"
    "- date: 日期，格式为 YYYY-MM-DD。The date in ISO format.\n"
    "- sentiment: 情感倾向，只能是 positive、neutral、negative 之一。\n"
    "- category: 问题类别，只能是 delivery、refund、quality、billing、account、other 之一。\n"
    "- urgency: 紧急程度，1 到 5 的整数，5 表示最紧急。An integer from 1 to 5.\n"
    "- summary: 用一句话概括文本内容，使用与原文相同的语言，不超过 50 个字。\n\n"
    "规则 / Rules:\n"
    "1. 只根据文本内容作答，不要猜测；无法确定的字段填 null。Never guess; use null when unsure.\n"
    "2. 金额中的千位分隔符要去掉，例如 1,234.50 应写为 1234.5。Remove thousands separators.\n"
    "3. 日期如果只有月和日，年份按文本上下文推断；仍无法确定时填 null。\n"
    "4. 如果文本包含多个订单，只抽取第一个订单的信息。Only the first order counts.\n"
    "5. 输出必须是合法的 JSON，键名使用英文小写加下划线，顺序与上面的字段说明一致。\n"
    "6. sentiment 要综合整段文本判断，而不是只看最后一句。Judge sentiment over the whole text.\n"
    "7. category 选择最主要的问题；如果客户只是咨询，选择 other。\n"
    "8. urgency 参考：涉及资金损失或安全问题为 5；影响使用为 4；一般投诉为 3；咨询为 2；表扬为 1。"
)


class TextMaker:
    """Sentences from fixed word lists, Chinese and English, drawn from a
    seeded generator. A pool of sentences keeps generation fast; documents
    combine them with unique ids and figures, so no two are alike."""

    def __init__(self, rng: random.Random, pool: int = 20_000):
        self.rng = rng
        self.zh = [self._zh_sentence() for _ in range(pool)]
        self.en = [self._en_sentence() for _ in range(pool)]

    def _zh_sentence(self) -> str:
        r = self.rng
        parts = []
        for clause in range(r.randint(1, 4)):
            words = [r.choice(ZH_WORDS) for _ in range(r.randint(2, 7))]
            if r.random() < 0.15:
                words.insert(r.randrange(len(words) + 1), r.choice(ZH_MIXED))
            if r.random() < 0.2:
                words.insert(r.randrange(len(words) + 1), str(r.randint(1, 2000)))
            parts.append("".join(words))
            parts.append(r.choice(ZH_PUNCT_MID))
        parts[-1] = r.choice(ZH_PUNCT_END)
        return "".join(parts)

    def _en_sentence(self) -> str:
        r = self.rng
        words = [r.choice(EN_WORDS) for _ in range(r.randint(5, 22))]
        if r.random() < 0.2:
            words.insert(r.randrange(len(words) + 1), str(r.randint(1, 5000)))
        for _ in range(r.randint(0, 2)):
            i = r.randrange(1, len(words))
            words[i - 1] += r.choice(EN_PUNCT_MID)
        text = " ".join(words)
        return text[0].upper() + text[1:] + r.choice(EN_PUNCT_END)

    def paragraph(self, lang: str, size: int) -> str:
        """About ``size`` bytes of text in ``lang``: zh, en or mixed."""
        r = self.rng
        out: list[str] = []
        used = 0
        while used < size:
            zh = lang == "zh" or (lang == "mixed" and r.random() < 0.5)
            sentence = r.choice(self.zh) if zh else r.choice(self.en)
            out.append(sentence)
            used += len(sentence.encode("utf-8")) + 1
        joiner = "" if lang == "zh" else " "
        return joiner.join(out)

    def document(self, n: int, size: int) -> str:
        """A unique document of about ``size`` bytes: a header with ids and
        figures, then paragraphs."""
        r = self.rng
        lang = r.choices(("zh", "en", "mixed"), (0.5, 0.35, 0.15))[0]
        amount = f"{r.randint(1, 99_999):,}.{r.randint(0, 99):02d}"
        date = f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if lang == "en":
            head = f"Ticket #{n:07d} - order {r.randint(10**11, 10**12 - 1)}, {date}, amount USD {amount}"
        else:
            head = f"工单编号：{n:07d}\n订单号：{r.randint(10**11, 10**12 - 1)}\n日期：{date}\n金额：¥{amount}"
        paragraphs = [head]
        left = size - len(head.encode("utf-8"))
        while left > 0:
            chunk = min(left, r.randint(200, 1200))
            text = self.paragraph(lang, chunk)
            paragraphs.append(text)
            left -= len(text.encode("utf-8")) + 2
        return "\n\n".join(paragraphs)


def line_of(n: int, messages: list[dict], max_tokens: int = 1024) -> str:
    body = {"model": "qwen-plus", "messages": messages, "max_tokens": max_tokens}
    return json.dumps({"custom_id": f"req-{n:07d}", "method": "POST", "url": "/v1/chat/completions", "body": body},
                      ensure_ascii=False)


def unique_request(maker: TextMaker, n: int, mean: int) -> str:
    """Every message unique: one document to summarise or classify, sometimes
    with its own system prompt, sometimes a short conversation."""
    r = maker.rng
    size = max(200, int(r.expovariate(1 / mean)) + mean // 5)
    shape = r.random()
    if shape < 0.55:
        messages = [{"role": "user", "content": maker.document(n, size)}]
    elif shape < 0.85:
        system = maker.paragraph(r.choice(("zh", "en")), r.randint(80, 400))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": maker.document(n, size)}]
    else:
        first = maker.document(n, size // 2)
        reply = maker.paragraph(r.choice(("zh", "en")), size // 4)
        follow = maker.paragraph(r.choice(("zh", "en", "mixed")), size // 4)
        messages = [{"role": "user", "content": first}, {"role": "assistant", "content": reply},
                    {"role": "user", "content": follow}]
    return line_of(n, messages)


class SharedPrompt:
    """The long system prompt and few-shot turns every request repeats."""

    def __init__(self, maker: TextMaker):
        r = maker.rng
        self.messages = [{"role": "system", "content": SYSTEM_SHARED}]
        for i in range(2):
            doc = maker.document(900_000 + i, r.randint(300, 600))
            answer = json.dumps({
                "order_id": str(r.randint(10**11, 10**12 - 1)), "customer_name": "北京星河科技有限公司" if i % 2 else "Northwind Traders",
                "product": r.choice(("无线耳机", "USB-C charger", "智能台灯")), "amount": round(r.uniform(10, 5000), 2),
                "currency": r.choice(("CNY", "USD")), "date": f"2026-0{i + 3}-1{i}", "sentiment": r.choice(("negative", "neutral")),
                "category": r.choice(("delivery", "refund", "quality")), "urgency": r.randint(2, 5),
                "summary": maker.paragraph("zh" if i % 2 else "en", 60)[:60],
            }, ensure_ascii=False)
            self.messages += [{"role": "user", "content": doc}, {"role": "assistant", "content": answer}]

    def request(self, maker: TextMaker, n: int, mean: int) -> str:
        r = maker.rng
        size = max(150, int(r.expovariate(1 / mean)) + mean // 5)
        return line_of(n, self.messages + [{"role": "user", "content": maker.document(n, size)}], max_tokens=512)


def path_for(kind: str, scale: float, out: str = DATA) -> str:
    suffix = "" if scale == 1 or kind == "tiny" else f"-x{scale:g}"
    return os.path.join(out, f"{kind}{suffix}.jsonl")


def generate(kind: str, scale: float = 1.0, out: str = DATA, quiet: bool = False) -> str:
    """Write the ``kind`` file at ``scale`` unless it is already there;
    return its path."""
    path = path_for(kind, scale, out)
    stamp = path + ".meta"
    meta = {"version": VERSION, "kind": kind, "scale": 1.0 if kind == "tiny" else scale}
    if os.path.exists(path) and os.path.exists(stamp):
        with open(stamp) as handle:
            if json.load(handle) == meta:
                return path
    os.makedirs(out, exist_ok=True)
    requests, target = SIZES[kind]
    if kind != "tiny":
        requests = max(10, int(requests * scale))
        target = int(target * scale)
    rng = random.Random(f"batchplan-bench-{kind}")
    maker = TextMaker(rng)
    if not quiet:
        print(f"generating {path} ({requests:,} requests, about {target / 1e6:.0f} MB)", file=sys.stderr)
    tmp = path + ".tmp"
    written = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        if kind == "shared":
            shared = SharedPrompt(maker)
            # The shared part is fixed; the unique document takes the rest.
            fixed = len(shared.request(maker, 0, 1).encode("utf-8"))
            for n in range(1, requests + 1):
                mean = max(300, int((target - written) / (requests - n + 1) - fixed) * 5 // 6)
                line = shared.request(maker, n, mean)
                handle.write(line + "\n")
                written += len(line.encode("utf-8")) + 1
        else:
            for n in range(1, requests + 1):
                # Aim the rest of the file at its target, so sizes come out right.
                mean = max(300, int((target - written) / (requests - n + 1)) * 5 // 6 - 200)
                line = unique_request(maker, n, mean)
                handle.write(line + "\n")
                written += len(line.encode("utf-8")) + 1
    os.replace(tmp, path)
    with open(stamp, "w") as handle:
        json.dump(meta, handle)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kinds", nargs="*", default=["unique", "shared", "tiny"], choices=sorted(SIZES))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (tiny is always 10 lines)")
    parser.add_argument("--out", default=DATA)
    args = parser.parse_args(argv)
    for kind in args.kinds:
        path = generate(kind, args.scale, args.out)
        print(f"{path}\t{os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
