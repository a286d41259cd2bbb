"""The shape of a generated GEMM: tile and block sizes, thread split, scratch.

NOTE: [GEMM blocking]
The blocked GEMM (gemm.py) follows the BLIS/GotoBLAS loop nest, written for a
row-major C whose rows are contiguous: the micro-tile is ``mr`` rows by ``nr``
columns, ``nr`` a few host vectors wide (the vector dim is n), and each of the
``mr`` rows takes one broadcast element of A per k step.

    for ic in rows, step mc:                    A block mc x kc: L3 (and L2)
      for pc in 0..k, step kc:                  pack A[ic:, pc:] (mr-row panels)
        for jc in cols, step nc:                pack B[pc:, jc:] (nr-col panels): L2
          for ir in 0..mc, step mr:             A micro-panel mr x kc: L1
            for jr in 0..nc, step nr:           B micro-panel streams from L2
              micro-kernel: C[ir:+mr, jr:+nr] (+)= Ap . Bp

On Zen 4 (AVX-512, 32 vector registers) the f32 tile is 12 x 32 (24 zmm
accumulators, 2 B vectors, broadcasts folded into the FMAs), f64 12 x 16;
with n <= one vector, 24 x 16. kc is chosen so the A micro-panel (mr x kc)
fits half of L1 (32 KiB) and is balanced over the k blocks; nc so the packed
B block (kc x nc) fits half of L2 (1 MiB); mc bounds the packed A block,
which stays in L3. The loop nest is specialised on the static shape; the
micro-kernels and packers it calls take strides and counts as arguments
([Shape-generic kernels] in library.py): edge tiles (m % mr rows, n % nr
columns) call the kernel of their row count and column vectors, packing pads
B panels with zeros. An operand used by one tile only (n <= nr for A, m <= mr
for B) is read in place instead of packed, as is A when its rows fit L1
([A in place]) and B when threads share it ([B in place]).

Products too small to repay the packing take the plain loop nest of dot.py
(``use_blocked``). A product big enough to repay a fork-join is cut into
``chunks`` along rows (or columns, when it has few row tiles, or batches)
and run on the thread pool (runtime/threadpool.py) by up to ``threads``
threads. A few chunks per thread let a thread slowed by a busy core take
fewer.

NOTE: [Shared packing]
Split by rows, the chunks share the packed B blocks. The loop runs over
steps, one per (k block, block of up to ``_SHARED_B_COLUMNS`` columns), k
blocks outside; each step is one fork-join whose chunks are (a table in the
module says which) either row tiles of this step or panels of the *next*
step's B block, packed into the other of two buffers while this step's is
read. One fork-join per step plus one that packs the first B block: with
packing in its own fork-join before each step the threads met twice per
step, and each meeting costs the imbalance of its last chunks. A chunk of
rows packs its own rows of A (in the step of the first column block, into
its own part of the shared A block): the packed panel then sits in the
cache of the core that uses it. Row chunks come largest first
(``guided_shares``): few claims, and the last small ones even out the
finishing times. Chunks with private packing repacked all of B per chunk
(measured: 10-20% of the time at 256..2048 with 8 chunks). Split by
columns (few rows: A is small) or by batches, each chunk is an independent
GEMM with private packing in its thread's scratch slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from ir.dtypes import DType

__all__ = ["GemmShape", "GemmPlan", "Tile", "tiles", "plan_gemm", "use_blocked", "may_split", "vector_bits",
           "guided_shares", "even_shares"]

# Below this many multiply-adds the plain loops are as fast (measured on Zen 4:
# equal at 32^3 and 48^3, blocked 1.3x faster at 64^3) and compile faster.
_MIN_BLOCKED_FMAS = 48 * 48 * 64
# Below this many multiply-adds one thread finishes before a fork-join (~1 us
# with libgomp) and the halved packing reuse would pay off.
_MIN_PARALLEL_FMAS = 96 * 96 * 96
_CHUNKS_PER_THREAD = 4
_MIN_CHUNK_FMAS = 64 * 64 * 64
# Columns of one shared packed B block (kc x this: a few MiB, in L3).
_SHARED_B_COLUMNS = 4096
_L1_BYTES = 32 * 1024
# Longest A rows (all mr of them) read in place ([A in place]).
_IN_PLACE_A_BYTES = 48 * 1024
_L2_BYTES = 1024 * 1024


@dataclass(frozen=True)
class GemmShape:
    """One dot: ``batch`` products of ``[m, k] @ [k, n]``; ``trans_a`` means the
    lhs is stored ``[k, m]``, ``trans_b`` that the rhs is stored ``[n, k]``."""

    dtype: DType
    batch: int
    m: int
    n: int
    k: int
    trans_a: bool = False
    trans_b: bool = False

    @property
    def fmas(self) -> int:
        return self.batch * self.m * self.n * self.k


@dataclass(frozen=True)
class Tile:
    """A micro-kernel's register tile: ``mr`` rows by ``nr`` columns of
    ``dtype``, ``lanes`` elements per host vector."""

    dtype: DType
    mr: int
    nr: int
    lanes: int

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize


def tiles(dtype: DType, vector_bits: int) -> list[Tile]:
    """Every register tile ``plan_gemm`` may choose for ``dtype`` on a host
    with ``vector_bits``-bit vectors: two vectors of columns by ``mr`` rows
    (2 * mr accumulators + 2 B vectors fit the register file: 32 vector
    registers with AVX-512, 16 without), and for products no wider than one
    vector, one vector by twice the rows."""
    lanes = vector_bits // (8 * dtype.itemsize)
    mr = 12 if vector_bits == 512 else 6
    return [Tile(dtype, mr, 2 * lanes, lanes), Tile(dtype, 2 * mr, lanes, lanes)]


@dataclass(frozen=True)
class GemmPlan:
    shape: GemmShape
    lanes: int        # elements per host vector
    mr: int           # micro-tile rows
    nr: int           # micro-tile columns (a multiple of lanes)
    kc: int           # k block
    mc: int           # rows per packed A block (a multiple of mr)
    nc: int           # columns per packed B block (a multiple of nr)
    threads: int      # 1: serial code; else the team size requested
    split: str        # "batch", "rows" or "cols": what the chunks divide
    chunks: int       # independent pieces of work for the thread pool
    chunk_units: int  # batches, mr-row tiles or nr-column tiles per chunk
    pack_a: bool      # False: the micro-kernel reads A in place (used once)
    pack_b: bool      # False: the micro-kernel reads B in place (used once)

    @property
    def itemsize(self) -> int:
        return self.shape.dtype.itemsize

    @property
    def tile(self) -> Tile:
        return Tile(self.shape.dtype, self.mr, self.nr, self.lanes)

    @property
    def a_block_elems(self) -> int:
        """Elements of one thread's packed A block."""
        if not self.pack_a:
            return 0
        rows = min(self.mc, _round_up(self.shape.m, self.mr))
        return rows * min(self.kc, self.shape.k)

    @property
    def b_block_elems(self) -> int:
        if not self.pack_b:
            return 0
        cols = min(self.nc, _round_up(self.shape.n, self.nr))
        return cols * min(self.kc, self.shape.k)

    @property
    def slot_bytes(self) -> int:
        """Scratch of one thread: its packed A block, then its packed B block."""
        return _round_up(self.a_block_elems * self.itemsize, 64) + \
            _round_up(self.b_block_elems * self.itemsize, 64)

    @property
    def shared(self) -> bool:
        """Threads split the rows and share packed blocks (see [Shared packing])."""
        return self.threads > 1 and self.split == "rows"

    @property
    def shared_cols(self) -> int:
        """Columns of the shared packed B block."""
        cols = min(_round_up(self.shape.n, self.nr), _SHARED_B_COLUMNS // self.nr * self.nr)
        if self.pack_b and self.kc >= self.shape.k and \
                cols >= _round_up(self.shape.n, self.nr) and cols >= 4 * self.nr:
            # One k block and one column block would pack all of B before any
            # tile starts: two column blocks let the second's packing overlap
            # the first's tiles (256x512x512 A B^T, two threads: 200 -> 205
            # GFLOP/s).
            cols = _round_up(-(-self.shape.n // 2), self.nr)
        return cols

    @property
    def shared_a_bytes(self) -> int:
        """The shared packed A block: every row, one k block."""
        if not self.pack_a:
            return 0
        rows = _round_up(self.shape.m, self.mr)
        return _round_up(rows * min(self.kc, self.shape.k) * self.itemsize, 64)

    @property
    def shared_steps(self) -> int:
        """Steps of the shared loop: (k block, column block) pairs."""
        return -(-self.shape.k // self.kc) * -(-self.shape.n // self.shared_cols)

    @property
    def shared_b_bytes(self) -> int:
        """One shared packed B block (two when steps overlap: [Shared packing])."""
        if not self.pack_b:
            return 0
        return _round_up(self.shared_cols * min(self.kc, self.shape.k) * self.itemsize, 64)

    @property
    def row_shares(self) -> list[tuple[int, int]]:
        """The row tiles of each chunk of a shared product (largest first)."""
        return guided_shares(-(-self.shape.m // self.mr), self.threads)

    @property
    def scratch_bytes(self) -> int:
        if self.shared:
            buffers = 2 if self.shared_steps > 1 else 1
            return self.shared_a_bytes + buffers * self.shared_b_bytes
        return self.slot_bytes * self.threads


def guided_shares(units: int, team: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``units``, largest first: each takes
    ``1 / (2 * team)`` of what is left (at least one unit). Claimed in order
    by a team, the big ones keep the claims few and the small last ones even
    out the finishing times (a single chunk's cost is the worst imbalance)."""
    shares, lo = [], 0
    while lo < units:
        size = max(1, -(-(units - lo) // (2 * team)))
        shares.append((lo, lo + size))
        lo += size
    return shares


def even_shares(units: int, chunks: int) -> list[tuple[int, int]]:
    """``units`` in ``min(units, chunks)`` ranges whose sizes differ by at most one."""
    chunks = max(1, min(units, chunks))
    return [(i * units // chunks, (i + 1) * units // chunks) for i in range(chunks)]


def _round_up(x: int, step: int) -> int:
    return -(-x // step) * step


def vector_bits(features: str) -> int:
    """The widest float vector of a CPU with LLVM ``features`` (``+avx512f,...``)."""
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    if "avx512f" in enabled:
        return 512
    if "avx" in enabled:
        return 256
    return 128


def use_blocked(shape: GemmShape) -> bool:
    """Whether ``shape`` takes the packed, blocked GEMM (else the plain loops)."""
    if not shape.dtype.is_float or shape.k == 0 or shape.m == 0 or shape.n == 0:
        return False
    return shape.m * shape.n * shape.k >= _MIN_BLOCKED_FMAS and shape.m >= 2


def may_split(shape: GemmShape) -> bool:
    """Whether ``shape`` is big enough to be worth splitting across threads."""
    return shape.fmas >= _MIN_PARALLEL_FMAS


def plan_gemm(shape: GemmShape, *, vector_bits: int, max_threads: int) -> GemmPlan:
    """Tile, block and thread split of a blocked GEMM for this host."""
    wide, narrow = tiles(shape.dtype, vector_bits)
    lanes = wide.lanes
    # One vector covers every column: take more rows instead.
    mr, nr = (narrow.mr, narrow.nr) if shape.n <= lanes else (wide.mr, wide.nr)
    itemsize = shape.dtype.itemsize
    # Packing pays for itself by reuse: an A micro-panel serves every column
    # tile, a B micro-panel every row tile. Used once, an operand is read in
    # place (B only when its rows are contiguous: the kernel loads vectors).
    pack_a = shape.n > nr and not _rows_of_a_in_place(shape, mr)
    threads, split, chunks, chunk_units = _thread_split(shape, mr, nr, max_threads)
    pack_b = shape.trans_b or shape.m > mr
    if pack_b and threads > 1 and split == "rows" and _b_in_place(shape, nr):
        pack_b = False
    # A micro-panel mr x kc in about half of L1. Read in place, A gains
    # nothing from k blocks and streams best in whole rows.
    kc = max(16, (_L1_BYTES // 2) // (mr * itemsize) // 8 * 8) if pack_a else shape.k
    kc = min(kc, shape.k)
    # Balance the k blocks: 2 blocks of 200 beat 384 + 16.
    blocks = -(-shape.k // kc)
    kc = -(-shape.k // blocks)
    nc = max(nr, (_L2_BYTES // 2) // (max(kc, 1) * itemsize) // nr * nr)
    mc = max(mr, 4096 // mr * mr)
    return GemmPlan(shape, lanes, mr, nr, kc, mc, nc, threads, split, chunks, chunk_units,
                    pack_a, pack_b)


def _b_in_place(shape: GemmShape, nr: int) -> bool:
    """Whether threads sharing rows read B as stored instead of packing it.

    NOTE: [B in place]
    Split by rows, B's panels are packed once per step by chunks of the
    previous step and read by both threads. Read in place instead (B as
    stored has its columns contiguous, as the micro-kernel wants), the
    packing, its chunks and the second buffer go away: two threads, Zen 4,
    f32, against packed: 256x784x512 216 vs 205, 256x512x512 215 vs 201,
    256^3 218 vs 198, 784x256x512 (A^T B) 207 vs 202, 1000^3 219 vs 220
    GFLOP/s. One thread gains nothing (within 2%) and keeps packing. Rows
    whose stride is a multiple of 4 KiB would all fall into the same cache
    sets along k (1024^3): those stay packed, as does a B stored transposed
    and one narrower than a tile (packing pads it to whole vectors).
    """
    return not shape.trans_b and shape.n >= nr and \
        (shape.n * shape.dtype.itemsize) % 4096 != 0


def _rows_of_a_in_place(shape: GemmShape, mr: int) -> bool:
    """Whether the micro-kernel reads A's ``mr`` rows as stored, all of k at once.

    NOTE: [A in place]
    Packing A costs a transposing copy of every k block (A is stored with k
    contiguous, a panel wants the mr rows of each k step together). Read in
    place, each k step loads one element of each of ``mr`` rows; a cache line
    of a row serves 16 (f32) k steps, so the rows must stay in L1 together:
    that fails when the row stride is a multiple of 4 KiB (all rows in one L1
    set: 1024^3 ran at 99 against 107 GFLOP/s packed) or when the rows are
    long. Measured on Zen 4, one thread, f32, in place with k in one block
    against packed: 256x784x512 106 vs 104, 256x512x512 108 vs 105.5,
    1000^3 109 vs 107, 256^3 110.6 vs 108 GFLOP/s. A stored transposed (k
    outermost) gains nothing (784x256x512: equal) and stays packed.
    """
    if shape.trans_a:
        return False
    stride = shape.k * shape.dtype.itemsize
    rows_bytes = mr * stride
    # Rows per L1 set (64 sets of 64-byte lines): at most 6 of the 8 ways,
    # leaving room for the B panel and C.
    sets = [(r * stride // 64) % 64 for r in range(mr)]
    crowded = max(sets.count(s) for s in sets) > 6
    return rows_bytes <= _IN_PLACE_A_BYTES and not crowded


def _thread_split(shape: GemmShape, mr: int, nr: int, max_threads: int
                  ) -> tuple[int, str, int, int]:
    """(team, split axis, chunks, units per chunk)."""
    if max_threads <= 1 or not may_split(shape):
        return 1, "rows", 1, 1
    row_tiles = -(-shape.m // mr)
    col_tiles = -(-shape.n // nr)
    if shape.batch >= 2 * max_threads:
        split, units = "batch", shape.batch
    elif row_tiles >= 2 * max_threads or row_tiles >= col_tiles:
        # Shared packing: chunks of row tiles, largest first ([Shared packing]).
        shares = guided_shares(row_tiles, max_threads)
        if len(shares) < 2:
            return 1, "rows", 1, 1
        return min(max_threads, len(shares)), "rows", len(shares), shares[0][1]
    else:
        split, units = "cols", col_tiles
    # A few chunks per thread, so a thread slowed by a busy core takes fewer;
    # not so small that the per-chunk packing of the other operand shows.
    wanted = min(_CHUNKS_PER_THREAD * max_threads, max(2, shape.fmas // _MIN_CHUNK_FMAS))
    per_chunk = -(-units // max(1, min(units, wanted)))
    chunks = -(-units // per_chunk)
    if chunks < 2:
        return 1, "rows", 1, 1
    return min(max_threads, chunks), split, chunks, per_chunk
