"""Turn the decoded King James Bible dump into the train / held-out text splits.

Input is the output of the Debian `bible` program (package bible-kjv 4.38) reading the data
file of package bible-kjv-text 4.38: one verse per line, prefixed with a reference such as
`Ge1:1`. The reference is dropped; a verse is one line, a blank line separates books.
Whole books are held out so held-out perplexity and haystacks never share a verse with
training.

    python3 prepare_kjv.py /tmp/kjv/all.txt data/
"""

import argparse
import re
from pathlib import Path

# Five of the 66 books (about 2% of verses), spread over both testaments and styles.
HELD_OUT_BOOKS = ("Ruth", "Eccl", "Jonah", "Gal", "Jas")

REFERENCE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def split_books(raw: str) -> dict[str, list[str]]:
    books: dict[str, list[str]] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        match = REFERENCE.match(line)
        if match is None:
            raise ValueError(f"unexpected line in the KJV dump: {line[:80]!r}")
        verse = " ".join(match.group(4).split())
        books.setdefault(match.group(1), []).append(verse)
    return books


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    books = split_books(args.raw.read_text(encoding="ascii"))
    if len(books) != 66:
        raise ValueError(f"expected 66 books, found {len(books)}")
    missing = [b for b in HELD_OUT_BOOKS if b not in books]
    if missing:
        raise ValueError(f"held-out books not found: {missing}")
    train = ["\n".join(v) for b, v in books.items() if b not in HELD_OUT_BOOKS]
    held = ["\n".join(books[b]) for b in HELD_OUT_BOOKS]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "kjv-train.txt").write_text("\n\n".join(train) + "\n", encoding="ascii")
    (args.out_dir / "kjv-heldout.txt").write_text("\n\n".join(held) + "\n", encoding="ascii")
    n_train = sum(len(v) for b, v in books.items() if b not in HELD_OUT_BOOKS)
    n_held = sum(len(books[b]) for b in HELD_OUT_BOOKS)
    print(f"train: {len(train)} books, {n_train} verses; held-out: {len(held)} books, {n_held} verses")


if __name__ == "__main__":
    main()
