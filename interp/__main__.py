import sys

from commands.interp import main
from training.allocator import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()  # this process is the command's own (see training/allocator.py)
    sys.exit(main())
