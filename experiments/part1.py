"""Part 1: train the 62-class handwritten-character CNN. Same flags as ``python -m jaxcnn part1``."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["part1", *sys.argv[1:]]))
