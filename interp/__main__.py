import sys

from training.allocator import keep_freed_memory
from commands.interp import main

if __name__ == "__main__":
    keep_freed_memory()  # this process is the command's own (see training/allocator.py)
    sys.exit(main())
