"""Part 3 of the study. Same flags as ``python -m jaxcnn part3``."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["part3", *sys.argv[1:]]))
