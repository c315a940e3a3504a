"""Write the golden vectors (once). ``--check`` compares instead of writing.

    python -m tests.vectors.generate [--check] [--force]
"""

import argparse
import json
import os
import sys

from tests.vectors.catalogue import ADDRESSES, FUNCTIONS, TYPES, address_text, to_json

HERE = os.path.dirname(os.path.abspath(__file__))


def build_all():
    files = {}
    for type_name, spec in TYPES.items():
        files[type_name] = [{"name": name, "fields": spec["fields"](obj),
                             "hex": spec["encode"](obj).hex()} for name, obj in spec["samples"]()]
    files["functions"] = [{"function": fname, "name": name, "fields": to_json(args),
                           "hex": fn(args).hex()}
                          for fname, (fn, cases) in FUNCTIONS.items() for name, args in cases]
    files["address"] = [{"name": name, "fields": {"raw": to_json(raw)}, "text": address_text(raw)}
                        for name, raw in ADDRESSES]
    return files


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    status = 0
    for name, vectors in build_all().items():
        path = os.path.join(HERE, f"{name}.json")
        text = json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"
        if args.check or (os.path.exists(path) and not args.force):
            with open(path) as f:
                same = f.read() == text
            print(f"{name}: {'ok' if same else 'DIFFERS'}")
            status |= not same
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"{name}: written ({len(vectors)} vectors)")
    sys.exit(status)


if __name__ == "__main__":
    main()
