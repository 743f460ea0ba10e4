"""The floor: one process that only parses each line and encodes its contents.

No template, no cache of repeated texts, no pricing: ``orjson.loads`` on each
line and the engine's count of each message's content (or embedding input),
with the engine batchplan loads (``--engine tiktoken|fastokens``, loaded the
same way). ``benchmarks/run.py`` divides its time by the number of cores to
get what that many processes of the engine could do at best, and prints how
close ``batchplan compare`` comes to it.

    python benchmarks/floor.py FILE.jsonl [--engine tiktoken|fastokens]
"""

from __future__ import annotations

import argparse

import orjson

from batchplan.planning.tokens import FASTOKENS, TIKTOKEN, load_fastokens, shared_engine


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--engine", choices=[TIKTOKEN, FASTOKENS], default=TIKTOKEN)
    args = parser.parse_args(argv)
    count = (load_fastokens() if args.engine == FASTOKENS else shared_engine(TIKTOKEN)).count
    requests = tokens = 0
    with open(args.path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            body = orjson.loads(line)["body"]
            if "messages" in body:
                for message in body["messages"]:
                    content = message.get("content")
                    if isinstance(content, str):
                        tokens += count(content)
            else:
                texts = body["input"]
                for text in [texts] if isinstance(texts, str) else texts:
                    tokens += count(text)
            requests += 1
    print(f"requests {requests}")
    print(f"content_tokens {tokens}")


if __name__ == "__main__":
    main()
