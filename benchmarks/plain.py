"""The plain approach: the script a user would write instead of batchplan.

One process; ``json.loads`` on each line; ``dashscope.get_tokenizer('qwen-plus')
.encode`` on each message. It prints the total prompt tokens by the ChatML rule
DashScope bills (docs/counting.md): content tokens + 5 per message + 3 per
request. It is the baseline ``benchmarks/run.py`` times batchplan against, and
the reference its ``--check`` mode compares counts with.

    python benchmarks/plain.py FILE.jsonl [FILE.jsonl ...]
"""

import json
import sys

import dashscope


def main(paths):
    tokenizer = dashscope.get_tokenizer("qwen-plus")
    requests = 0
    total = 0
    for path in paths:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                if not line.strip():
                    continue
                request = json.loads(line)
                messages = request["body"]["messages"]
                total += 3
                for message in messages:
                    total += len(tokenizer.encode(message["content"])) + 5
                requests += 1
    print(f"requests {requests}")
    print(f"prompt_tokens {total}")


if __name__ == "__main__":
    main(sys.argv[1:])
