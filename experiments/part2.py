"""Part 2 of the study. Same flags as ``python -m jaxcnn part2``."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["part2", *sys.argv[1:]]))
