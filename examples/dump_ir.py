"""See what the compiler makes of a function: traced IR, LLVM IR and assembly.

    python examples/dump_ir.py [ir|optimized-ir|llvm|optimized-llvm|asm]
"""

import sys

import numpy as np

import compiler as xp
from compiler import functional, jit, nn


def loss(w, x, labels):
    return nn.cross_entropy(nn.relu(x @ w), labels)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "ir"
    w = np.zeros((8, 4), np.float32)
    x = np.ones((16, 8), np.float32)
    labels = np.zeros(16, np.int32)
    step = jit(functional.value_and_grad(loss))
    print(step.lower(w, x, labels).as_text(kind))
    del xp
