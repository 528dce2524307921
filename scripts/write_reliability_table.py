"""Write the table of docs/reliability.md from a run of Testing/test_reliability.py.

    RELIABILITY_TABLE=/tmp/rows.json python -m pytest Testing/test_reliability.py
    python scripts/write_reliability_table.py /tmp/rows.json

Each row is what the test measured: the hostile input, the command, the exit code and the first line the user
read (temporary paths shortened to ``.../``). The text between the table markers of docs/reliability.md is
replaced; the rest of the document is kept.
"""

import json
import os
import re
import sys

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "reliability.md")
START, END = "<!-- table: written by scripts/write_reliability_table.py -->", "<!-- end of table -->"


def cell(text):
    text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/\s]+/", ".../", str(text))
    text = re.sub(r"pid \d+ on \S+,", "pid 4242 on host,", text)
    return text.replace("|", "\\|").replace("\n", " ")


def main(rows_path):
    with open(rows_path, encoding="utf-8") as handle:
        rows = json.load(handle)
    lines = [START, "", "| key | hostile input | command | exit | what the user sees (first line) | outcome |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['key']}` | {cell(row['hostile'])} | {cell(row['command'])} | {row['code']} | "
                     f"{cell(row['message'])} | clear message, nothing lost"
                     + ("" if row["kept"] == "yes" else f" ({cell(row['kept'])})") + " |")
    lines += ["", f"{len(rows)} rows.", "", END]
    with open(DOC, encoding="utf-8") as handle:
        doc = handle.read()
    if START not in doc or END not in doc:
        sys.exit(f"{DOC} lacks the table markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(DOC, "w", encoding="utf-8") as handle:
        handle.write(head + "\n".join(lines) + tail)
    print(f"{len(rows)} rows -> {DOC}")


if __name__ == "__main__":
    main(sys.argv[1])
