"""The direct NCHW conv's untuned defaults (te/ops/conv2d.py), derived from the shape and the
target: the output-channel block (`default_ocb`), the register tile (`default_tiles`), where the
weights are packed (`default_pack_at`), the order of the tile loops (`default_out_order`,
`spatial_out_order`), whether a strided 1x1 conv reads its input subsampled (`subsamples`) and
whether the register tile takes input channels in pairs (`paired_channels`).

Each docstring gives the reasoning (vector width, vector registers, the caches of
te.caches.Caches) and the measurements that fixed its constants; the tuner's knobs
(implementations.DirectConv.space) keep every other choice open.
"""
from __future__ import annotations

from te.caches import BYTES_PER_CYCLE, FMA_UNITS, beats
from te.target import Target

from . import conv_chunks, conv_split_c
from .common import largest_divisor
from .conv_geometry import ConvGeometry, round_up
from .schedule import REMOTE_INPUT_COST, rows_split_pays


def default_ocb(g: ConvGeometry, target: Target) -> int:
    """The output-channel block: one vector register (16 lanes with AVX-512) where the channels
    allow it; with AVX-512's 32 registers, two (32 channels) for wide maps, for 1x1 convs, whose
    broadcast input loads would otherwise outnumber the FMAs, and for spatial convs on small maps
    (at most 14 columns), the block tuned configs choose there (bench/RESULTS.md, "Conv defaults
    from tuned configs"); four (64 channels) for 1x1 convs on rows of at most 7 (short_rows)."""
    lanes, Kg = target.lanes(), g.K // g.groups
    # a 1x1 conv whose channels two-vector blocks do not divide still takes them where that pads
    # at most 1/32 more channels: SqueezeNet's 512 -> 1000 at 13x13 (1000 -> 1024, not 1008) ran
    # 1.4x faster so (0.48 against 0.67 ms on two threads, 0.95 against 1.32 on one); with 80 to
    # 144 channels at 14x14 the one-vector block was 7-12% faster on two threads
    pad32 = round_up(g.K, 2 * lanes) - round_up(g.K, lanes)
    if two_vector_tiles(target) and short_rows(g, target):
        return 4 * lanes
    if pair_block(g, target):
        return 2 * lanes
    if two_vector_tiles(target) and (wide_map(g) or (g.R * g.S == 1 and g.groups == 1 and 32 * pad32 <= g.K)
                                     or small_map(g)):
        return 2 * lanes
    if g.groups == 1:
        return lanes if g.K >= lanes * 3 // 4 else max(4, 1 << (g.K - 1).bit_length())
    return largest_divisor(Kg, lanes)


def short_rows(g: ConvGeometry, target: Target) -> bool:
    """A 1x1 conv whose output rows are too short for two-vector channel blocks to fill the
    accumulators: four vectors (64 channels with AVX-512) x one row of OW <= 7 pixels.

    The tile is one row (a 1x1 conv's input rows are a channel plane apart: a taller tile adds
    a plane-apart stream per row), so with 7 columns a two-vector block holds 14 accumulators
    of the 28 and does 2 FMAs per input broadcast; four vectors hold 28 and do 4.  Measured on
    Emerald Rapids, two threads, cold weights: ResNet-50's 7x7 1x1 convs 2048 -> 512 1.10x,
    512 -> 2048 (+ Sum + Relu) 1.05x, the stride-2 1024 -> 2048 1.09x; on 14-wide rows it lost
    (512 -> 1024 stride 2: 0.87x), where 2 x 14 accumulators already fill the registers."""
    lanes = target.lanes()
    return (g.R * g.S == 1 and g.groups == 1 and g.K % (4 * lanes) == 0
            and 4 * g.OW <= target.acc_vectors)


def paired_channels(g: ConvGeometry) -> bool:
    """Does the register tile take two input channels per iteration of its reduction loop (the
    pair unrolled inside the tile_ic loop)?  Yes for a 1x1 conv: its loop body is one channel,
    a row of weight vectors and a broadcast per pixel, where a spatial conv's holds its taps.

    Where the tile fills the registers (short_rows' 7 pixels x 4 channel vectors: 28
    accumulators, and with the 4 weight vectors and a broadcast 33 of AVX-512's 32), one channel
    per iteration makes LLVM carry the spilled accumulator round the loop as a chain of register
    copies, six zmm moves per channel on the ports the FMAs use besides the spill's store and
    load; with a pair in the body, one.  The 1 x 14 x 2-vector tile of the 14x14 maps fits the
    registers and still ran faster with pairs (two channels' planes in flight per iteration; the
    loop's own instructions are few, so the cause is not certain).  Measured on Emerald Rapids
    against one channel per iteration, one thread's CPU time, alone: ResNet-50's 2048 -> 512 at
    7x7 1.13x, 512 -> 2048 + Sum + Relu 1.12x, the stride-2 1024 -> 2048 1.26x, 1024 -> 256 at
    14x14 1.03-1.05x, 256 -> 1024 + Sum + Relu 1.07-1.09x, SqueezeNet's 512 -> 1000 at 13x13
    1.12x, 512 -> 64 1.07x, 64 -> 256 1.0x; in the models' order (bench/conv_in_model.py) every
    call 1.01-1.16x; on two threads with cold weights (bench/conv_weak.py's timing, calls no
    other process disturbed) 1.04-1.14x.  An unroll by two holds the same code on any target;
    it only doubles a loop body of a few dozen instructions.

    The pair sits inside the tile_ic loop, which keeps its iteration count, so the model's
    weight prefetches (te/prefetch.py's stream loop: the least frequent loop that runs often
    enough) stay a burst per tile_ic channels: a tile_ic of 2 instead moved them to every second
    channel and ran 0.83-0.94x in ResNet-50's order (1.11-1.16x with prefetching off)."""
    return g.R * g.S == 1


def two_vector_tiles(target: Target) -> bool:
    """Do the two-register channel blocks and their fixed tiles (below) apply?  They are sized
    for AVX-512 (16 lanes, 32 registers); 16 registers leave too few for their tiles."""
    return target.lanes() == 16 and target.vector_registers >= 32


PAIR_MIN_WIDTH = 12     # narrowest output row of a pair-block conv (pair_block)
PAIR_WIDTHS = (4, 5, 6)  # the pair block's tile widths (pair_block_width)


def pair_block(g: ConvGeometry, target: Target) -> bool:
    """On a 16-register target (not two_vector_tiles), does a spatial conv take two channel
    vectors x a 1 x pair_block_width tile with its taps unrolled, rather than one vector x up to 12 pixels?
    Where its channels per group come in pairs of vectors, on rows of at least PAIR_MIN_WIDTH;
    not where the tile would pad the row of a conv the one-vector tiles run chunks_outer.

    One vector of channels loads a broadcast input pixel per FMA, and with two load and two FMA
    ports a cycle the loads bind; a second channel vector halves the broadcasts per FMA: 2 weight
    vectors + 4-6 broadcasts per 8-12 FMAs, within the 16 registers with the accumulators.
    Unrolled, a row's taps share the broadcasts of the pixels they overlap.  Measured on Zen 3
    (AVX2, two threads, weights cold, bench/conv_weak.py's timing), against session 30's
    default (one vector, taps rolled): AlexNet's grouped 5x5 96 -> 256 at 26x26 2.09-2.37x and
    its grouped 3x3 at 12x12 2.10-2.18x, its 3x3 256 -> 384 at 12x12 1.17-1.50x, the same 5x5
    ungrouped 1.61-1.83x, ZFNet's 5x5 stride 2 on 25-wide rows 1.58-1.74x and its 7x7 stem on
    109 (the direct conv) 1.42-1.74x; at 28 to 56 wide and at 13 wide 0.95-1.08x (within the
    runs' spread), AlexNet's 11x11 stem 1.03x.  ResNet-50's stride-2 3x3 128@56x56 (28 wide out)
    1.40x over 8 channels x 2 x 4 (session 30, which took the pair block for strided convs of rows
    of 28 only).

    Where the one-vector tiles run chunks_outer (weights past L2, te/ops/conv_chunks.py), that
    order needs tiles that divide the map: a pair tile that pads the row loses it, and with it
    the weights read from L1 (0.45x on ResNet-50's stride-2 3x3 256@28x28, 14 wide; 0.70-0.75x on
    its 7-wide 3x3 512 convs).  Rows under 12 keep one vector: on 7 a 1 x 4 tile pads 14%."""
    lanes = target.lanes()
    if (two_vector_tiles(target) or g.R * g.S == 1 or (g.K // g.groups) % (2 * lanes)
            or g.OW < PAIR_MIN_WIDTH or target.acc_vectors < 2 * max(PAIR_WIDTHS)):
        return False
    if g.OW % pair_block_width(g) == 0:
        return True
    bh, bw = default_tiles(g, lanes, target)     # the one-vector tile (not a pair block: lanes channels)
    return default_order(g, lanes, bh, bw, target) != "chunks_outer"


def pair_block_width(g: ConvGeometry) -> int:
    """The pair block's tile width: of PAIR_WIDTHS, the one that pads the row least (the narrower on a tie)."""
    return min(PAIR_WIDTHS, key=lambda w: (round_up(g.OW, w), w))


def pair_block_tile(g: ConvGeometry, ocb: int, target: Target) -> bool:
    """Is a tile of `ocb` channels pair_block's (its 1 x pair_block_width tile, taps unrolled, 8 channels a step)?"""
    return ocb == 2 * target.lanes() and pair_block(g, target)


def wide_map(g: ConvGeometry) -> bool:
    """A spatial conv over a wide map: two output-channel vectors per input broadcast pay off.

    With two 512-bit FMA ports one broadcast load per FMA is more than the load ports deliver;
    a 32-channel block halves the loads, and a 1x8 pixel tile keeps the 16 accumulators in
    registers.  Maps of 28 columns and more (ResNet-50's 3x3 layers of 28 and 56 columns) gain.
    """
    return g.groups == 1 and g.R * g.S > 1 and g.K % 32 == 0 and g.OW >= 28


def small_map(g: ConvGeometry) -> bool:
    """A spatial conv over a map of at most 14 columns with channels in 32s (ResNet's 14x14 and 7x7)."""
    return g.groups == 1 and g.R * g.S > 1 and g.K % 32 == 0 and g.OW <= 14


def tile_budget(ocb: int, target: Target) -> int:
    """Output pixels a register tile may hold with `ocb` channels: its accumulators must fit the
    target's vector registers (Target.acc_vectors), at least 4."""
    return max(4, target.acc_vectors // -(-ocb // target.lanes()))


def default_tiles(g: ConvGeometry, ocb: int, target: Target) -> tuple[int, int]:
    """(rows, columns) of the register tile: as many output pixels as the vector registers hold.

    Tiles that do not divide the output are allowed (the accumulator is padded), at the price
    of the padded work; the pick maximises useful accumulators per padded work.
    """
    measured = ocb == 32 and two_vector_tiles(target)      # the fixed tiles, chosen by timing them
    if measured and two_row_tile(g, ocb, target):
        return 2, 7
    if measured and wide_map(g):
        if g.OW % 8 and g.OW % 7 and (g.C // g.groups) * g.R * g.S < 64:
            # a short reduction (a 3x3 stem over 3 channels: 27 FMAs per output) leaves the store
            # to dominate, and a tile that pads the row stores its channel vectors lane by lane
            # into NCHW: a tile that divides the row stores whole vectors along it (SqueezeNet's
            # 111-wide stem: 1x3 0.45 ms against the padded 1x8's 0.68 ms, bench/RESULTS.md)
            d = largest_divisor(g.OW, 8)
            if d >= 3:
                return 1, d
        # 7 columns where 8 would pad the row (28 columns): faster than the padded 8
        return 1, (7 if g.OW % 8 and g.OW % 7 == 0 else 8)
    if measured and small_map(g) and g.OW % 7 == 0:
        return 1, 7                             # faster than 16 channels in a 2x14 tile
    if measured and g.R * g.S == 1:              # a 1x1 conv on a small map: one row of up to 14
        return 1, (g.OW if g.OW <= 14 else largest_divisor(g.OW, 14))
    if pair_block_tile(g, ocb, target):
        return 1, pair_block_width(g)
    budget = tile_budget(ocb, target)
    best, best_score = (1, 1), (-1.0, 0, 0)
    for bw in range(1, min(g.OW, budget) + 1):
        for bh in range(1, min(g.OH, budget // bw, 2) + 1):
            waste = round_up(g.OW, bw) * round_up(g.OH, bh) / (g.OW * g.OH)
            # 7 accumulators already hide the FMA latency; more only save loop overhead.  Rows of
            # 8 or 16 pixels store as whole vectors, which makes the NCHW store cheaper.
            score = (round(min(bh * bw, 7) / waste, 3), bw in (8, 16) and bh * bw >= 14, bh * bw, -bh)
            if score > best_score:
                best, best_score = (bh, bw), score
    return best


def two_row_tile(g: ConvGeometry, ocb: int, target: Target) -> bool:
    """Does a strided spatial conv take a 2 x 7 register tile (28 accumulators with 32 channels)
    rather than one row of 7?

    Every tile streams its channel block's weights (C x R x S x ocb floats) once; where they
    outgrow the L1d (te.caches.Caches.level) they come from L2 at every tile, and a tile twice
    as tall halves that stream; two output rows at stride 2 also share one of the input rows they
    read.  Measured on Emerald Rapids (one thread's CPU time): ResNet-50's stride-2 3x3 128@56x56
    1.18-1.24x, 256@28x28 1.03-1.05x (two threads, idle moments: 1.06x and, with pack_at's
    "root", 1.15x); the 7x7 stem (19 KiB of weights a block, within L1d) keeps
    its 1 x 8 (a 2 x 7 ran 0.90x), and a 7-row map keeps one row (a second pads it).  Stride 1
    keeps the measured one-row tiles (its 3x3 convs mostly run by Winograd).

    A small map that the chunks_outer order takes with one-row tiles (spatial_out_order) keeps
    them: there every tile reads its chunk's weights from L1, so a second row saves no weight
    stream, and since the chunks' weights are prefetched a chunk ahead (conv_chunks.py) the
    256@28x28 ran faster with 1 x 7 than with 2 x 7 (1.02x on one thread's CPU time, 1.08x on
    two threads with weights cold, bench/conv_weak.py; a loaded machine, rough)."""
    lanes = target.lanes()
    if small_map(g) and g.OW % 7 == 0 and spatial_out_order(g, ocb, 1, 7, target) == "chunks_outer":
        return False
    return (g.groups == 1 and g.R * g.S > 1 and min(g.sh, g.sw) > 1 and g.OH % 2 == 0 and g.OW % 7 == 0
            and 14 * -(-ocb // lanes) <= target.acc_vectors
            and target.caches.level(4.0 * g.C * g.R * g.S * ocb) > 0)


def subsamples(g: ConvGeometry, target: Target) -> bool:
    """Does the direct conv read a strided 1x1 conv's input subsampled first (subsample_nchw)?

    A stride-2 1x1 conv reads one pixel in four, from lines whose other half it never uses, and
    every output-channel block reads them again.  Packed once into a dense map a quarter the size,
    the blocks re-read contiguous rows from a smaller working set, at the cost of one pass over
    the pixels (a per-lane gather) and a barrier.  That pays only where it moves the re-read
    working set to a closer cache level (te.caches.Caches.level): ResNet-50's 512 -> 1024
    projection at 28x28 reads 0.8 MiB of rows, 0.2 MiB subsampled: beyond a 1 MiB L2 (Zen 4)
    against within it.  Where both stay in L2 (Emerald Rapids' 2 MiB) the extra pass made it
    slower on two threads (0.82 against 0.77 ms, alternating)."""
    if g.R != 1 or g.S != 1 or (g.sh, g.sw) == (1, 1) or (g.pt, g.pl, g.pb, g.pr) != (0, 0, 0, 0):
        return False
    c = target.caches
    return c.level(4.0 * g.N * g.C * input_rows_read(g) * g.W) > c.level(4.0 * g.N * g.C * g.OH * g.OW)


# Widest padded row (floats) the exact pad copies by masked vector loads: four of AVX-512's
# vectors, eight of AVX2's; a wider row is copied by whole chunks (conv_geometry.pad_chunk).
EXACT_PAD_WIDTH = 64


def padded_by_thread(g: ConvGeometry, cols: int, target: Target) -> bool:
    """Does each thread of the direct conv pad its own copy of the input (at the start of its
    share of the parallel loop: conv2d._tasks), rather than all of them one copy before a
    barrier?  Where the conv pads and runs on more than one thread, with rows of at most
    EXACT_PAD_WIDTH padded columns (`cols`; the copy is then exact: conv_geometry.pad_nchw).

    One shared copy is written by the threads in parts, then every thread reads all of it (split
    by output channels, as most of these convs are), (T-1)/T of it from lines the other cores
    hold modified, after a barrier.  A thread's own copy reads x once (what a producer left in
    the other cores' caches is remote either way) and then stays in its L2.  Measured on Emerald
    Rapids, 2 threads, ResNet-50's convs as the model runs them (bench/pad_by_thread.py): the
    stride-2 3x3 512@14x14 1.24x, the 3x3 512@7x7 1.05x, the stride-2 256@28x28 and 128@56x56
    1.03x (the whole model 1.014x, Inception v2 1.016x, DenseNet-121 1.016x); alone (the same
    input every call) 1.20x, 1.04x, 1.09x and 1.07x.  It rests on what every multi-core x86 this
    project meets shares: a line another core holds modified costs several L2 hits (more across
    Zen's CCXs), a barrier waits for the slowest thread, and a copy of a few hundred KiB from
    lines already near runs at L2 speed; conv2d._tasks keeps the copy within half a thread's L2
    (1 MiB on Emerald Rapids, 512 KiB on Zen 4, 640 KiB on Ice Lake).  Not for grouped convs:
    their threads split the groups, so a shared copy padded by channels is already each
    thread's own (a copy per thread of every group made AlexNet's grouped 3x3 convs at 13x13
    0.83-0.96x)."""
    if target.threads < 2 or g.groups > 1 or subsamples(g, target):
        return False
    return bool(g.pt or g.pl or g.pb or g.pr) and cols <= EXACT_PAD_WIDTH


def default_pack_at(g: ConvGeometry, ocb: int, bh: int, bw: int, target: Target) -> str:
    """Pack the weights per output-channel block (inside the parallel loop) when they outweigh the
    output and the block's accumulator map fits the target's L1d.

    Packed at the root, the weights go to memory and come back: for the deep layers (many weights,
    few pixels) that traffic is most of the time.  Packed per channel block, a thread packs the
    slice it is about to use, which stays in L2, and accumulates the block's whole map (OH x OW x
    ocb floats) before its epilogue reads it back: within L1d (48 KiB on Emerald Rapids, 32 KiB on
    Zen 4) that map never leaves the core; beyond it, its write-back and re-read cost what the
    per-block packing saves.  A 1x1 conv whose threads split its rows (split_by_rows) packs at
    the root.
    """
    if split_by_rows(g, bh, target):
        return "root"               # a task per channel block would undo the split by rows
    weights = g.K * (g.C // g.groups) * g.R * g.S
    outputs = g.N * g.K * g.OH * g.OW
    fits = g.OH % bh == 0 and g.OW % bw == 0 and g.OH * g.OW * ocb * 4 <= target.caches.l1d
    return "oc_block" if fits and weights > 4 * outputs else "root"


def input_rows_read(g: ConvGeometry) -> int:
    """Rows of the padded input the conv reads: all of them, except with a stride longer than
    the filter's span (a 1x1 stride-2 conv reads every other row)."""
    span = (g.R - 1) * g.dh + 1
    return min(g.H + g.pt + g.pb, g.OH * min(g.sh, span) + max(0, span - g.sh))


def split_by_rows(g: ConvGeometry, bh: int, target: Target) -> bool:
    """Do the threads of this 1x1 conv split its output rows (schedule.rows_split_pays)?"""
    rows = g.N * -(-g.OH // bh)
    return g.groups == 1 and g.R * g.S == 1 and rows_split_pays(4.0 * g.N * g.C * g.H * g.W, 4.0 * g.K * g.C,
                                                                 rows, target)


def default_out_order(g: ConvGeometry, ocb: int, bh: int, bw: int, target: Target) -> str:
    """The loops over output tiles: channel blocks outside the tile rows ("oc_outer"), or tile
    rows outside ("rows_outer"): `spatial_out_order` for spatial filters, else the order that
    with the target's caches takes fewer cycles (te.caches.beats).

    The cycles are te.caches' model (Caches.loop_cycles: the FMAs, plus the bytes re-read at the
    bandwidth of the level that holds what lies between two reads of them), with W the weights
    (W_b one block's slice), X the input rows the conv reads (input_rows_read) and B one row of
    tiles' input band:

    * oc_outer re-reads W_b at every tile (W_b apart) and X at every block (X + W_b apart);
    * rows_outer re-reads W at every tile row (W + B apart), W_b at every other tile (W_b + B
      apart) and the band at every block (B + W_b apart).

    X re-read from beyond L2 costs Caches.plane_cycles, not the level's streaming rate: its
    lines lie a channel plane apart, where no prefetcher reaches.  So big maps with few weights
    take rows_outer wherever their input outgrows L2 (a 1x1 conv 512 -> 128 on 28x28, 1.6 MiB
    with Emerald Rapids' 2 MiB L2; 256 -> 64 on 56x56, 3.1 MiB), while deep layers (few pixels,
    many weights: W + B past L2) keep oc_outer on every target, and so does every conv whose
    operands stay in L2.  Grouped convs keep oc_outer (a block reads only its group's channels).

    First, on more than one thread, a 1x1 conv whose input costs more than its weights and whose
    threads' shares of it fit in L2 takes rows_outer (split_by_rows, schedule.rows_split_pays):
    in a model its input sits in the L2s of the threads that wrote it.
    """
    if g.groups != 1:
        return "oc_outer"
    if g.R * g.S > 1:
        return spatial_out_order(g, ocb, bh, bw, target)
    if split_by_rows(g, bh, target):
        return "rows_outer"         # each thread reads its band's input from its own L2
    Wp = g.W + g.pl + g.pr
    blocks = -(-g.K // ocb)
    rows = g.N * -(-g.OH // bh)
    tiles = rows * -(-g.OW // bw)
    w_b = 4.0 * g.C * g.R * g.S * ocb
    w, x = blocks * w_b, 4.0 * g.N * g.C * input_rows_read(g) * Wp
    band = 4.0 * g.C * ((bh - 1) * g.sh + (g.R - 1) * g.dh + 1) * Wp
    if subsamples(g, target):       # the conv reads the dense subsampled map
        x, band = 4.0 * g.N * g.C * g.OH * g.OW, 4.0 * g.C * bh * g.OW
    c, lanes, work = target.caches, target.lanes(), g.flops

    oc_outer = c.loop_cycles(work, lanes, [(tiles * w, w_b)]) + c.plane_cycles(blocks * x, x + w_b)
    rows_outer = (c.loop_cycles(work, lanes, [(rows * w, w + band), ((tiles - rows) * w, w_b + band)])
                  + c.plane_cycles(blocks * x, band + w_b))
    return "rows_outer" if beats(rows_outer, oc_outer) else "oc_outer"


MIN_PART_CHANNELS = 64  # input channels each thread's part of an untuned split_c conv sums (split_c_pays)
MIN_SPLIT_WORK = 1 << 24    # multiply-adds below which an untuned 1x1 conv does not split_c (split_c_pays)


def default_order(g: ConvGeometry, ocb: int, bh: int, bw: int, target: Target) -> str:
    """The direct conv's untuned out_order: "split_c" where `split_c_pays`, else default_out_order's."""
    return "split_c" if split_c_pays(g, target) else default_out_order(g, ocb, bh, bw, target)


def split_c_pays(g: ConvGeometry, target: Target) -> bool:
    """Do the threads split a 1x1 conv's input channels (conv_split_c.py) rather than its output
    channels or rows?  A strided conv: `strided_split_c_pays`; a stride-1 one by the bytes below.

    Counted in bytes a thread moves beyond one pass over its share, with T threads, input X,
    weights W, output Y: split by output channels it reads (T-1)/T X from the other cores' lines,
    a channel plane apart (schedule.REMOTE_INPUT_COST times a streamed byte); by rows, (T-1)/T W
    more weights and (T-1)/T^2 X remote; by input channels it writes its partial map and reads
    a share of all T maps when adding them (2 Y, streamed in order).  The split pays where 2 Y is
    at most half the cheaper of the others (the count leaves out its barrier and the latency of
    the adding pass; the convs measured sit at half), or at most equal to it where the channel
    split's share would crowd the L2 (`crowds_l2`: ResNet-50's 1024 -> 512 at 14x14): deep
    reductions onto few channels, ResNet-50's 1024 -> 256 at 14x14 (X 0.8 MB, W 1 MB, Y 0.2 MB:
    0.4 MB against 0.8) and 2048 -> 512 at 7x7; not its 256 -> 1024 (Y four times X), nor
    Inception's 528 -> 256 at 13x13 (0.35 MB against 0.36, its share a third of the L2), left
    to the tuner.

    Only where the weights outweigh the input (W >= X): the count assumes thread t finds input
    channel range t in its own L2, as a producer split by output channels leaves it, and the
    weight-heavy layers are the ones split so (ResNet-50's last two stages); a conv on a wider
    map with few weights (SqueezeNet's squeeze convs, ResNet-50's 256 -> 64 at 56x56) follows
    producers split by rows, where the rows split reads no remote input and this one would.

    Each part must also keep MIN_PART_CHANNELS input channels: a thread writes and re-reads its
    whole partial map (8 bytes per output) for 2 x C/T FLOPs per output, so with 64 channels at
    least 16 FLOP a byte, above the ridge point of the cores this project meets (15 on this
    Emerald Rapids VM, 'tilewise info'); many threads on a short reduction would make the split
    memory bound.

    And the conv must do MIN_SPLIT_WORK multiply-adds (ResNet-50's two do 51 M): the split adds a
    barrier and a pass over the partial maps, and on short kernels it lost.  In DenseNet-121's
    order, 2 threads, its 1x1 convs at 7x7 (512, 768 and 992 -> 128: 3-6 M multiply-adds, inputs
    written by 3x3 convs split by rows) ran 1.31-1.37x slower split (48.7 against 37.1 us for
    512 -> 128; the cause not isolated).  A barrier and a short pass cost about the same on any
    of these x86 cores, so the bound holds there too.

    Measured in ResNet-50's order on Emerald Rapids, 2 threads (bench/conv_in_model.py, wall time
    on a loaded machine, rough), against the previous defaults in the same runs: 1024 -> 256 at
    14x14 266-283 us against 377-404 split by rows and 391-404 by output channel blocks;
    2048 -> 512 at 7x7 289-334 us against 365-426 by output channel blocks (weights packed by
    part, so that each thread's slice is the contiguous one the model's prefetch streams into its
    L2, te/prefetch.py; with the unsplit layout 2048 -> 512 ran 0.93-0.97x).  Alone, warm input
    (bench/conv_weak.py) the splits ran as fast as by channel blocks (296 against 285-287 us,
    312 against 316): the gain is where the input and weights lie in the model.  The sizes are the only
    inputs, so the rule holds as far as the remote-line cost does (the same L2-to-L2 transfer on
    Zen 4/5, Ice Lake and Sapphire/Emerald Rapids), and only on more than one thread."""
    T = target.threads
    if (not conv_split_c.applies(g, T) or (g.pt, g.pl, g.pb, g.pr) != (0, 0, 0, 0)
            or g.C // T < MIN_PART_CHANNELS or g.flops / 2 < MIN_SPLIT_WORK):
        return False
    if (g.sh, g.sw) != (1, 1):
        return strided_split_c_pays(g)
    x, w, y = 4.0 * g.N * g.C * g.H * g.W, 4.0 * g.K * g.C, 4.0 * g.N * g.K * g.OH * g.OW
    by_channels = REMOTE_INPUT_COST * x * (T - 1) / T
    by_rows = w * (T - 1) / T + REMOTE_INPUT_COST * x * (T - 1) / T ** 2
    cheapest = min(by_channels, by_rows)
    return w >= x and (2 * (2 * y) <= cheapest or (2 * y <= cheapest and crowds_l2(x, w, T, target)))


def strided_split_c_pays(g: ConvGeometry) -> bool:
    """Does a strided 1x1 conv (split_c_pays checked that it applies, and its bounds on a part's
    channels and the work) split its input channels between the threads?  Where its weights
    outweigh the input rows it reads (every line of each stride-th row).

    A strided conv reads one input pixel in sh x sw, a channel plane apart, which split_c_pays'
    byte count does not price (it charges a remote byte twice a streamed one, and these reads
    are neither): measured instead.  ResNet-50's strided projections in its order on Emerald
    Rapids, 2 threads, against the untuned kernels of the time (bench/conv_in_model.py, 11
    rounds, wall time, calls no thread waited for a CPU during): 512 -> 1024 at 28x28 (weights
    2 MiB, rows read 0.8 MB) 690 and 690 us split against 765 and 766 as the GEMM (1.11x, twice;
    the tuner's model check had found 1.095x for the same config a session before), and the
    direct conv unsplit 796 (0.96x: why the GEMM was preferred); 1024 -> 2048 at 14x14 (8 MiB,
    0.4 MB) 672-679 against 748 unsplit (1.10-1.11x); 256 -> 512 at 56x56 (0.5 MiB of weights
    against 1.6 MB of rows, left to the GEMM) 0.63x split.  The weight-heavy projections are the
    ones whose cold weights a thread streams (te/prefetch.py) while it reads only its half of
    the sparse input; the rule takes them by the same size comparison as the stride-1 rule's
    W >= X, so it holds wherever that one does (two or more threads, any of this project's x86
    cores), its size bounds the measured ones."""
    return 4.0 * g.K * g.C >= 4.0 * g.N * g.C * g.OH * g.W


def crowds_l2(x: float, w: float, threads: int, target: Target) -> bool:
    """Would a thread's share of a 1x1 conv split by output channel blocks (its weight slice
    w / T and the whole input x, which every channel block re-reads) fill more than half its
    core's L2?  Then split_c_pays takes the input split at an even byte count (2 Y no more than
    the cheapest other split's extra bytes) instead of at half of it.

    In a model's order the weights stream through the L2 (from memory, te/prefetch.py's prefetches
    an eighth of the slice ahead), and with the input filling most of the rest the channel blocks'
    re-reads of it miss: the byte count, which charges the input once, understates the channel
    split.  ResNet-50's 1024 -> 512 at 14x14 (first 1x1 of stage 4; x 0.8 MB, w / 2 1 MB: 1.8 MB
    of a 2 MiB L2, 2 Y equal to the remote input) ran 1.20x and 1.24x faster split on two threads
    (713 against 853-869 us, and the same after normalising a run's load by the other kernels;
    model order, calls no thread waited for a CPU during, 9 rounds, loaded Emerald Rapids, rough).
    Inception v1's 528 -> 256 at 13x13 (2 Y 0.97 of the remote input, but 0.63 MB: a third of the
    L2) ran no faster split (266 against 239-243 us, the split build's other kernels 8% slower
    in that run): it keeps the channel blocks.  The half is a margin between the two measured
    shares; a 1 MiB L2 (Zen 4) or 1.25 MiB (Ice Lake) takes the split on smaller convs, as its
    input is evicted sooner there too."""
    return x + w / threads > target.caches.l2 / 2


def spatial_out_order(g: ConvGeometry, ocb: int, bh: int, bw: int, target: Target) -> str:
    """The tile order of a conv with a spatial filter: rows_outer where the weights it re-reads
    at every tile row come from L2, or from L3 at a quarter of its rate at most; chunks_outer
    where they outgrow L2 and the block's map fits the L1d (`chunks_pay`); else oc_outer.

    The parallel loop's static shares (te/codegen_parallel.py) give each thread a run of its
    tiles.  With rows_outer a run is a band of output rows: the thread reads its part of the
    input once, from wherever the kernel before left it, and re-reads each row's band (a few
    input rows of every channel) per channel block from L1/L2, while the weights W come again at
    every tile row as one sequential stream.  With oc_outer a run is a few channel blocks, and
    every thread reads the whole input at every block: lines a channel plane apart, which no
    prefetcher fetches, so each one costs a miss to L3 or to the other core's L2.

    A tile row of bh x OW pixels does bh * OW FMAs per weight vector, so W streams at
    4 * lanes * FMA_UNITS / (bh * OW) bytes a cycle whatever the channels: 4.6 for ResNet-50's
    256@28x28 (2 x 7 tiles on a 14-wide map), 18 for its 14x14 and 7x7 layers (one row of 7).
    Measured on Emerald Rapids, two threads, weights cold (rotating copies past L2), calls no
    other process disturbed (bench/conv_weak.py), rows_outer against oc_outer: the stride-2
    3x3 128@56x56 (weights in L2) 1.64-1.76x, 256@28x28 (2.3 MiB of weights, from L3 at 4.6
    bytes a cycle) 1.22-1.26x; 512@14x14 and the 3x3 512@7x7 (9 MiB at 18 bytes a cycle)
    0.99x and 1.21x in a quiet moment, 0.67-0.6x while other processes loaded the L3; the 7x7
    stem 1.02x.  A quarter of the level's nominal rate (te.caches.BYTES_PER_CYCLE: 8 of L3's
    32) separates them and leaves the rest to the other cores.  Weights past the core's L3 share
    (a Zen 4 core's 4 MiB, an Ice Lake server core's 1.5 MiB) would stream from memory:
    oc_outer reads them once.

    Where the weights outgrow L2, chunks_outer (te/ops/conv_chunks.py) reads them once as
    oc_outer does, and keeps each chunk of them in L1 across the whole map instead of streaming
    the block's slice through L1 at every tile (`chunks_pay` says where that fits)."""
    Wp = g.W + g.pl + g.pr
    w = 4.0 * round_up(g.K, ocb) * (g.C // g.groups) * g.R * g.S
    band = 4.0 * g.C * ((bh - 1) * g.sh + (g.R - 1) * g.dh + 1) * Wp
    level = target.caches.level(w + band)
    if level >= 2 and chunks_pay(g, ocb, bh, bw, target):
        return "chunks_outer"
    rate = 4.0 * target.lanes() * FMA_UNITS / (bh * g.OW)
    return "rows_outer" if level <= 1 or (level == 2 and rate <= BYTES_PER_CYCLE[2] / 4) else "oc_outer"


CHUNK_CHANNELS = 8      # the input channels of an untuned chunks_outer conv's chunk (chunk_channels)


def chunks_pay(g: ConvGeometry, ocb: int, bh: int, bw: int, target: Target) -> bool:
    """Does a spatial conv whose weights outgrow L2 take the chunks_outer order (conv_chunks.py)?

    Each task is one channel block's whole map, accumulated one chunk of input channels at a
    time: the map (OH x OW x ocb floats) and a chunk's weights (chunk_channels x R x S x ocb)
    must stay in the L1d together (te.caches.Caches.level), the tiles must divide the map
    (conv_chunks.applies), and there must be tasks enough that the threads' static shares differ
    by at most a quarter (four per thread).  Then each weight byte comes from L3 or memory once
    per call, as with oc_outer, but each tile reads its weights from L1, not streamed from L2
    at 4.6-18 bytes a cycle (spatial_out_order), and each thread reads the input once per
    block from its L2.  ResNet-50's stride-2 3x3 256@28x28 (a 25 KiB map, 2.3 MiB of weights)
    and 512@14x14 (6 KiB, 9 MiB) fit on Emerald Rapids (48 KiB L1d) and Ice Lake (48 KiB);
    on Zen 4 (32 KiB) only the 7x7 maps do.  The 128@56x56 keeps rows_outer: its weights stay in
    L2.  Measured on Emerald Rapids (bench/conv_weak.py, weights cold, a loaded machine, rough):
    256@28x28 1.14x rows_outer on one thread, 1.21x on two; 512@14x14 1.02-1.06x oc_outer on
    one thread; the stride-1 3x3 512@7x7 (direct: conv_algorithm.py) 1.04x on one thread."""
    if g.groups != 1 or not conv_chunks.applies(g, bh, bw):
        return False
    working = 4.0 * ocb * (g.OH * g.OW + chunk_channels(g) * g.R * g.S)
    tasks = g.N * -(-g.K // ocb)
    return target.caches.level(working) == 0 and tasks >= 4 * target.threads


def chunk_channels(g: ConvGeometry) -> int:
    """The input channels of an untuned chunks_outer conv's chunk (the tile_ic knob): CHUNK_CHANNELS,
    the chunk `chunks_pay` fits in the L1d beside the block's map, whatever the register tile.

    A chunk's weights (channels x R x S x ocb floats) come from beyond L2 (from memory, in a
    model) while the first tile row reads them and from L1 while the other rows re-read them, so
    the chunk's weights, its input rows and the block's map must stay in the L1d together.  With
    one-row tiles the other orders' 16 channels make that 18 KiB of 3x3 weights + 12-28 KiB of
    padded input rows (7x7 stride 1, 14x14 stride 2) + the 6 KiB map: three quarters of Emerald
    Rapids' and Ice Lake's 48 KiB L1d or more, past Zen 4's 32 KiB; 8 channels halve the first
    two (21-29 KiB), within all of them (Zen 5: 48 KiB).  Measured in ResNet-50's order
    (bench/conv_in_model.py: time_steps order "model", its weights cold from memory; one
    thread's CPU time on Emerald Rapids, a loaded machine, rough), 8 channels against 16: the
    3x3 512@7x7 1.05-1.17x (both calls, five runs; one call of one run 0.97x), the stride-2
    512@14x14 1.05-1.15x (four runs); alone with warm weights 1.01x and 1.03x; 4 channels ran as
    8 (0.96-1.01x).  The 2 x 7 tiles of the stride-2 256@28x28 took 8 already (16 ran 0.96x in
    the model)."""
    return largest_divisor(g.C // g.groups, CHUNK_CHANNELS)


def default_store(g: ConvGeometry, bw: int) -> str:
    """How the direct conv's epilogue stores a register tile into NCHW: "vec_oc" (channel
    vectors; a tile row of a power of two of them codegen transposes in registers into runs of
    bw pixels, te/codegen_vector.py's transposed stores) or "vec_ow" (vectors along the row,
    each built lane by lane from the tile's channel vectors).

    A spatial conv whose tile row is a power of two (the 7x7 stem's 1 x 8) takes vec_oc: the
    transpose costs a few shuffles per vector, the gathers one insert per lane.  Measured on
    ResNet-50's stem, two threads, Emerald Rapids (bench/conv_weak.py, a loaded machine, rough):
    1.04-1.12x.  A tile that does not divide the row takes vec_oc too: vec_ow would put a guard
    on its lanes (masked stores).  Other convs keep vec_ow."""
    if g.OW % bw or (g.R * g.S > 1 and bw > 1 and bw & (bw - 1) == 0):
        return "vec_oc"
    return "vec_ow"
