"""Writes a seed corpus of valid TFC_* inputs for fuzz_sparse_op.c (see its header), or with
``--fused`` for fuzz_fused_op.c (TFC_SPARSE_INVERTED_RESIDUAL nodes)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tfcompress.export.sparse_pack import pack_options, pack_sparse_weights  # noqa: E402


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    i = 0
    for n, k in [(8, 16), (17, 40), (33, 64), (5, 100)]:
        for block in (1, 4):
            if k % block:
                continue
            w = rng.standard_normal((n, k)).astype(np.float32)
            w[rng.random(w.shape) < 0.7] = 0
            for int8, sort_rows in ((0, True), (1, True), (0, False)):
                if int8:
                    q = np.clip(np.round(w * 20), -127, 127).astype(np.int8)
                    blob = pack_sparse_weights(q, block=block, scales=np.full(n, 0.05, np.float32))
                else:
                    blob = pack_sparse_weights(w, block=block, sort_rows=sort_rows)
                for conv in (0, 1):
                    for rows in (1, 5, 21):
                        flags = conv | (int8 << 1) | 4 | 8
                        opts = pack_options("RELU", 0 if conv else 1)
                        data = bytes([flags, rows, k % 256, len(opts)]) + opts + blob
                        with open(os.path.join(out_dir, f"seed{i:03d}"), "wb") as f:
                            f.write(data)
                        i += 1
    # float32, many rows (the AVX-512 and AVX2 CSR kernels): K > 128 (feature chunks), zeros in 4x1 output
    # blocks (its quad layout) and unstructured (channel pairs)
    for n, k, quads in [(37, 200, True), (37, 200, False), (20, 24, True)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        if quads:
            w[np.repeat(rng.random(((n + 3) // 4, k)) < 0.8, 4, axis=0)[:n]] = 0
        else:
            w[rng.random(w.shape) < 0.8] = 0
        blob = pack_sparse_weights(w)
        for rows in (16, 39):
            opts = pack_options("RELU6", 0)
            data = bytes([1 | 4 | 8, rows, k % 256, len(opts)]) + opts + blob
            with open(os.path.join(out_dir, f"seed{i:03d}"), "wb") as f:
                f.write(data)
            i += 1
            # cap 1 with TFCOMPRESS_NO_AVX512=1 (byte 3 + 17): the AVX2 CSR kernel, 2 ranges
            data = bytes([1 | 4 | 8 | (1 << 6), rows + 40, k % 256, len(opts) + 17]) + opts + blob
            with open(os.path.join(out_dir, f"seed{i:03d}"), "wb") as f:
                f.write(data)
            i += 1
    # int8, many rows and few rows (the VNNI quad kernel, the windowed VNNI row kernel): 1x4
    # blocks and unstructured, K not a multiple of 64 (or of 4), N not a multiple of 16, every
    # dispatch level (flag bits 6-7)
    for n, k, blocks in [(37, 200, True), (20, 30, False), (40, 132, True)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        if blocks:
            w[np.repeat(rng.random((n, k // 4)) < 0.8, 4, axis=1)] = 0
        else:
            w[rng.random(w.shape) < 0.8] = 0
        q = np.clip(np.round(w * 20), -127, 127).astype(np.int8)
        blob = pack_sparse_weights(q, block=4 if blocks else 1, scales=np.full(n, 0.05, np.float32))
        for rows in (1, 3, 16, 39):
            for cap in (0, 2, 3):
                opts = pack_options("RELU", 0)
                data = bytes([1 | 2 | 4 | 8 | (cap << 6), rows + 40 * (cap % 3), k % 256, len(opts)]) + opts + blob
                with open(os.path.join(out_dir, f"seed{i:03d}"), "wb") as f:
                    f.write(data)
                i += 1
            # the same with TFCOMPRESS_NO_AVX512=1 (byte 3 + 17): cap 1 AVX2, cap 2 AVX-VNNI kernels
            for cap in (1, 2):
                opts = pack_options("RELU", 0)
                data = bytes([1 | 2 | 4 | 8 | (cap << 6), rows + 40 * cap, k % 256, len(opts) + 17]) + opts + blob
                with open(os.path.join(out_dir, f"seed{i:03d}"), "wb") as f:
                    f.write(data)
                i += 1
    print(f"{i} seeds in {out_dir}")


def _same(h, w, st):
    """(Ho, Wo, pad_top, pad_left) of a SAME 3x3 depthwise with stride st."""
    ho, wo = -(-h // st), -(-w // st)
    return ho, wo, max((ho - 1) * st + 3 - h, 0) // 2, max((wo - 1) * st + 3 - w, 0) // 2


def main_fused(out_dir):
    """Valid fused nodes (fuzz_fused_op.c layout): with / without expand and residual, strides
    1 and 2, paddings 0..1, odd sizes and channel counts, 1x4-block and unstructured 1x1s, every
    dispatch level and 1-7 row ranges; int8 blocks, int8 stems, float32 blocks and float32 stems."""
    import struct

    from tfcompress.export.sparse_fused import pack_fused_params

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(1)
    i = 0

    def sparse_int8(n, k, block):
        w = rng.standard_normal((n, k))
        if block == 4:
            w[np.repeat(rng.random((n, k // 4)) < 0.8, 4, axis=1)] = 0
        else:
            w[rng.random(w.shape) < 0.8] = 0
        q = np.clip(np.round(w * 20), -127, 127).astype(np.int8)
        return pack_sparse_weights(q, block=block, scales=np.full(n, 0.02, np.float32))

    for (h, w_, cin, ce, co, st, expand, residual) in [
            (4, 4, 8, 8, 8, 1, True, True), (7, 5, 12, 40, 12, 1, True, True), (9, 7, 16, 48, 20, 2, True, False),
            (8, 8, 8, 8, 16, 1, False, False), (5, 70, 8, 36, 8, 1, True, True), (6, 6, 16, 64, 24, 2, True, False),
            (5, 9, 16, 96, 16, 1, True, True)]:  # Ce = 96: 64 + 32 channels (VNNI depthwise)
        if not expand:
            ce = cin
        ho, wo, pt, pl = _same(h, w_, st)
        params = pack_fused_params(
            in_hw=(h, w_), c_in=cin, c_exp=ce, c_out=co, out_hw=(ho, wo), stride=st, pad_tl=(pt, pl),
            has_expand=expand, has_residual=residual, acts=("RELU6", "RELU6", "NONE"),
            q_exp=(0.05, -128) if expand else (0.05, 3), q_dw=(0.04, -128),
            q_proj=(0.1, -2) if not residual else (0.08, 1),
            dw_weights=rng.integers(-127, 128, (3, 3, ce)), dw_scales=np.full(ce, 0.01, np.float32))
        for block in (1, 4):
            ex = sparse_int8(ce, cin, block) if expand else b""
            pj = sparse_int8(co, ce, 4 if ce % 4 == 0 else 1)
            for cap, no512 in ((0, 0), (1, 0), (2, 0), (3, 0), (1, 1), (2, 1)):  # no512: TFCOMPRESS_NO_AVX512=1
                flags = (1 if expand else 0) | (no512 << 5) | (cap << 6)
                data = bytes([flags, cap % 7, 8, 0]) + struct.pack("<HHH", len(params), len(ex), len(pj))
                with open(os.path.join(out_dir, f"fused{i:03d}"), "wb") as f:
                    f.write(data + params + ex + pj)
                i += 1
    # stems: a 3x3 conv over a 1-4 channel image as the expand (flag bit 2), dense weights [Ce][Kp]
    for (hi, wi, ci, ce, co, ss) in [(9, 11, 3, 32, 16, 2), (7, 6, 3, 16, 8, 2), (6, 5, 1, 16, 8, 1), (8, 9, 4, 32, 24, 2)]:
        h, w_ = -(-hi // ss), -(-wi // ss)
        kp = -(-9 * ci // 4) * 4
        spt, spl = max((h - 1) * ss + 3 - hi, 0) // 2, max((w_ - 1) * ss + 3 - wi, 0) // 2
        params = pack_fused_params(
            in_hw=(h, w_), c_in=kp, c_exp=ce, c_out=co, out_hw=(h, w_), stride=1, pad_tl=(1, 1),
            has_expand=True, has_residual=False, acts=("RELU6", "RELU6", "NONE"), q_exp=(0.05, -128),
            q_dw=(0.04, -128), q_proj=(0.1, -2), dw_weights=rng.integers(-127, 128, (3, 3, ce)),
            dw_scales=np.full(ce, 0.01, np.float32),
            stem={"hw": (hi, wi), "channels": ci, "stride": ss, "pad_tl": (spt, spl)})
        wq = np.zeros((ce, kp), np.int8)
        wq[:, :9 * ci] = rng.integers(-127, 128, (ce, 9 * ci))
        ex = pack_sparse_weights(wq, block=4, scales=np.full(ce, 0.02, np.float32))
        pj = sparse_int8(co, ce, 4)
        for cap, no512 in ((0, 0), (1, 0), (2, 0), (2, 1)):
            for r in (0, 22):  # 1 range, or 2 ranges with stealing
                flags = 1 | (no512 << 5) | (cap << 6)
                data = bytes([flags, r, 8, 0]) + struct.pack("<HHH", len(params), len(ex), len(pj))
                with open(os.path.join(out_dir, f"fused{i:03d}"), "wb") as f:
                    f.write(data + params + ex + pj)
                i += 1
    # float32 blocks (params flag bit 3: float32 x / y / biases, TFCS blobs of float32 values,
    # float32 depthwise weights): with / without expand and residual, strides 1 / 2, Ce not a
    # multiple of 16 (the depthwise's lane-by-lane last group) or of 4 (1x1 blocks of 1), several
    # strips per range; portable, AVX-512F and AVX2 (no-AVX-512) CSR kernels, 1-3 ranges, row
    # ranges and the phased split
    def sparse_f32(n, k, block):
        w = rng.standard_normal((n, k)).astype(np.float32)
        if block == 4:
            w[np.repeat(rng.random((n, k // 4)) < 0.8, 4, axis=1)] = 0
        else:
            w[rng.random(w.shape) < 0.8] = 0
        return pack_sparse_weights(w, block=block, sort_rows=False)  # as _pack_for packs 1x1 convs

    for (h, w_, cin, ce, co, st, expand, residual, acts) in [
            (4, 4, 8, 38, 8, 1, True, True, ("RELU6", "RELU6", "NONE")),
            (7, 5, 12, 40, 12, 1, True, True, ("RELU", "RELU6", "NONE")),
            (9, 7, 16, 40, 20, 2, True, False, ("RELU6", "RELU6", "NONE")),
            (8, 8, 8, 8, 16, 1, False, False, ("NONE", "RELU", "NONE")),
            (6, 6, 38, 38, 24, 2, False, False, ("NONE", "RELU_N1_TO_1", "NONE")),
            (20, 8, 8, 38, 8, 1, True, True, ("RELU6", "NONE", "NONE")),  # Wo 8: 2-row strips
            (5, 70, 8, 20, 8, 1, True, True, ("RELU6", "RELU6", "NONE")),  # Wo 70: 1-row strips
            (17, 4, 16, 48, 16, 1, True, True, ("RELU6", "RELU6", "NONE")),  # Wo 4: 4-row strips
            (4, 4, 36, 36, 36, 1, True, True, ("RELU6", "RELU6", "NONE"))]:  # phased: project in channel parts + add
        if not expand:
            ce = cin
        ho, wo, pt, pl = _same(h, w_, st)
        params = pack_fused_params(
            in_hw=(h, w_), c_in=cin, c_exp=ce, c_out=co, out_hw=(ho, wo), stride=st, pad_tl=(pt, pl),
            has_expand=expand, has_residual=residual, acts=acts, q_exp=(0, 0), q_dw=(0, 0), q_proj=(0, 0),
            dw_weights=(rng.standard_normal((3, 3, ce)) * 0.3).astype(np.float32), dw_scales=None,
            dtype="float32")
        for block in (1, 4):
            if block == 4 and (expand and cin % 4 or ce % 4):
                continue
            ex = sparse_f32(ce, cin, block) if expand else b""
            pj = sparse_f32(co, ce, block)
            # r = byte 1: 0 one range, 2 three ranges, 22 two with stealing, 1 two ranges (phased split
            # where automatic: stride 1, < 4 rows per range), 15 two ranges with TFCOMPRESS_FUSED_PHASED=1
            for cap, no512, r in ((0, 0, 0), (1, 0, 2), (3, 0, 22), (1, 1, 1), (3, 0, 15)):
                flags = (1 if expand else 0) | (no512 << 5) | (cap << 6)
                data = bytes([flags, r, 8, 0]) + struct.pack("<HHH", len(params), len(ex), len(pj))
                with open(os.path.join(out_dir, f"fused{i:03d}"), "wb") as f:
                    f.write(data + params + ex + pj)
                i += 1
    # float32 stems (flag bits 2 and 3): the float32 stem row over a 1-5 channel image, Ce 16 / 20 /
    # 40 (partial last vectors at 4, 8 and 16 lanes), strides 1 / 2
    for (hi, wi, ci, ce, co, ss) in [(9, 11, 3, 32, 16, 2), (6, 5, 1, 20, 8, 1), (8, 9, 5, 40, 24, 2)]:
        h, w_ = -(-hi // ss), -(-wi // ss)
        kp = -(-9 * ci // 4) * 4
        spt, spl = max((h - 1) * ss + 3 - hi, 0) // 2, max((w_ - 1) * ss + 3 - wi, 0) // 2
        params = pack_fused_params(
            in_hw=(h, w_), c_in=kp, c_exp=ce, c_out=co, out_hw=(h, w_), stride=1, pad_tl=(1, 1),
            has_expand=True, has_residual=False, acts=("RELU6", "RELU6", "NONE"), q_exp=(0, 0), q_dw=(0, 0),
            q_proj=(0, 0), dw_weights=(rng.standard_normal((3, 3, ce)) * 0.3).astype(np.float32), dw_scales=None,
            dtype="float32", stem={"hw": (hi, wi), "channels": ci, "stride": ss, "pad_tl": (spt, spl)})
        wf = np.zeros((ce, kp), np.float32)
        wf[:, :9 * ci] = rng.standard_normal((ce, 9 * ci))
        ex = pack_sparse_weights(wf, block=4, sort_rows=False)
        pj = sparse_f32(co, ce, 4)
        for cap, no512, r in ((0, 0, 0), (3, 0, 22), (1, 1, 2)):
            flags = 1 | (no512 << 5) | (cap << 6)
            data = bytes([flags, r, 8, 0]) + struct.pack("<HHH", len(params), len(ex), len(pj))
            with open(os.path.join(out_dir, f"fused{i:03d}"), "wb") as f:
                f.write(data + params + ex + pj)
            i += 1
    # outputs that stop short of the input (Ho / Wo below what SAME gives): the kernels must stop
    # at Wo (the stride-1 sdot depthwise ran to the row's end, session 17); int8 and float32
    for (h, w_, ce, co, st, crop) in [(6, 40, 32, 16, 1, (2, 31)), (9, 20, 48, 8, 2, (1, 4))]:
        ho, wo, pt, pl = _same(h, w_, st)
        for f32 in (False, True):
            params = pack_fused_params(
                in_hw=(h, w_), c_in=16, c_exp=ce, c_out=co, out_hw=(ho - crop[0], wo - crop[1]), stride=st,
                pad_tl=(pt, pl), has_expand=True, has_residual=False, acts=("RELU6", "RELU6", "NONE"),
                q_exp=(0, 0) if f32 else (0.05, -128), q_dw=(0, 0) if f32 else (0.04, -128),
                q_proj=(0, 0) if f32 else (0.1, -2),
                dw_weights=(rng.standard_normal((3, 3, ce)) * 0.3).astype(np.float32) if f32
                else rng.integers(-127, 128, (3, 3, ce)),
                dw_scales=None if f32 else np.full(ce, 0.01, np.float32), dtype="float32" if f32 else "int8")
            ex, pj = (sparse_f32(ce, 16, 4), sparse_f32(co, ce, 4)) if f32 else (sparse_int8(ce, 16, 4),
                                                                             sparse_int8(co, ce, 4))
            for cap, no512, r in ((0, 0, 0), (1, 0, 2), (2, 0, 22), (3, 0, 0), (1, 1, 1)):
                flags = 1 | (no512 << 5) | (cap << 6)
                data = bytes([flags, r, 8, 0]) + struct.pack("<HHH", len(params), len(ex), len(pj))
                with open(os.path.join(out_dir, f"fused{i:03d}"), "wb") as f:
                    f.write(data + params + ex + pj)
                i += 1
    print(f"{i} seeds in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--fused":
        main_fused(sys.argv[2] if len(sys.argv) > 2 else "corpus_fused")
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "corpus")
